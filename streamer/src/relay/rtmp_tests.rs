//! The RTMP publisher against a scripted rml_rtmp server on 127.0.0.1.

use super::super::{RelaySet, RelaySettings, RelayState, RelayTarget};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Serves one connection: handshake, accepts `connect`, refuses `publish` with `code` and a
/// description naming the stream key (as some servers do), then holds the connection.
async fn refuse_publish(mut socket: TcpStream, code: &'static str) {
    let mut buf = vec![0u8; 8192];
    let mut handshake = Handshake::new(PeerType::Server);
    let remaining = loop {
        let n = socket.read(&mut buf).await.unwrap();
        assert!(n > 0, "client left during the handshake");
        match handshake.process_bytes(&buf[..n]).unwrap() {
            HandshakeProcessResult::InProgress { response_bytes } => {
                socket.write_all(&response_bytes).await.unwrap();
            }
            HandshakeProcessResult::Completed { response_bytes, remaining_bytes } => {
                socket.write_all(&response_bytes).await.unwrap();
                break remaining_bytes;
            }
        }
    };
    let (mut session, initial) = ServerSession::new(ServerSessionConfig::new()).unwrap();
    let mut pending = initial;
    pending.extend(session.handle_input(&remaining).unwrap());
    loop {
        let mut replies = Vec::new();
        for result in pending.drain(..) {
            match result {
                ServerSessionResult::OutboundResponse(p) => {
                    socket.write_all(&p.bytes).await.unwrap()
                }
                ServerSessionResult::RaisedEvent(ServerSessionEvent::ConnectionRequested {
                    request_id,
                    ..
                }) => replies.extend(session.accept_request(request_id).unwrap()),
                ServerSessionResult::RaisedEvent(ServerSessionEvent::PublishStreamRequested {
                    request_id,
                    stream_key,
                    ..
                }) => {
                    let description = format!("stream {stream_key} is not allowed");
                    replies.extend(session.reject_request(request_id, code, &description).unwrap());
                }
                _ => {}
            }
        }
        pending = replies;
        if !pending.is_empty() {
            continue;
        }
        let n = socket.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        pending = session.handle_input(&buf[..n]).unwrap();
    }
}

#[tokio::test]
async fn a_refused_publish_is_reported_by_its_code_without_the_key() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(refuse_publish(socket, "NetStream.Publish.BadName"));
        }
    });
    let url = format!("rtmp://127.0.0.1:{port}/live/sekrit-key");
    let settings = RelaySettings { connect_timeout: Duration::from_secs(2), ..Default::default() };
    let set = RelaySet::new(vec![RelayTarget { id: "r".into(), url }], settings);
    let mut changed = set.changed();
    let status = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let s = set.statuses().remove(0);
            if s.state == RelayState::Retrying {
                return s;
            }
            changed.changed().await.unwrap();
        }
    })
    .await
    .unwrap();
    assert_eq!(status.last_error.as_deref(), Some("publish refused: NetStream.Publish.BadName"));
    assert!(!format!("{:?} {set:?}", set.statuses()).contains("sekrit"));
    set.finish(Duration::from_secs(1)).await;
    server.abort();
}
