//! The local API server (`channels-api-local`) over raw TCP: the requests a careless or
//! hostile client sends that never reach the router (garbage request line, bad or doubled
//! `Content-Length`, a URI or header section too large, a body cut short) are answered with
//! the JSON error schema, not hyper's empty bodies. (In AWS, API Gateway answers these.)
//!
//! Needs the `channels-api-local` binary (`make test` builds it).

use serde_json::Value;
use std::time::Duration;
use streamstack_tests::process::Service;
use streamstack_tests::{aws, channel_table, unique};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Reply {
    status: u16,
    head: String,
    body: Value,
}

/// Sends `request` as is (then closes the write side when `half_close`) and reads the answer
/// until the server closes the connection.
async fn raw(port: u16, request: &[u8], half_close: bool) -> Reply {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    // The server may answer (and close) before it has read everything: ignore write errors.
    let _ = stream.write_all(request).await;
    if half_close {
        let _ = stream.shutdown().await;
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer));
    let _ = read.await.expect("the server answers and closes within 10 s");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no head: {text:?}"));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
    let body = serde_json::from_str(body).unwrap_or_else(|_| panic!("non-JSON body: {text:?}"));
    Reply { status, head: head.to_ascii_lowercase(), body }
}

/// Sends `request` in two parts without half-closing: the first, then (once the answer has
/// begun to arrive, as a rejection comes before the whole request is read) the rest, in two
/// writes. The server must keep reading until the client is done (a lingering close): a
/// close with unread input resets the connection, and the client loses the answer.
async fn raw_while_sending(port: u16, request: &[u8], split: usize) -> Reply {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    stream.write_all(&request[..split]).await.expect("write");
    let mut answer = vec![0u8; 12];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut answer));
    read.await.expect("an answer within 10 s").expect("read the status line");
    let (a, b) = request[split..].split_at((request.len() - split) / 2);
    stream.write_all(a).await.expect("the server still reads the request");
    tokio::time::sleep(Duration::from_millis(50)).await;
    stream.write_all(b).await.expect("the server still reads the request: no reset");
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer));
    read.await.expect("the server closes within 10 s").expect("a clean close, not a reset");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no head: {text:?}"));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
    let body = serde_json::from_str(body).unwrap_or_else(|_| panic!("non-JSON body: {text:?}"));
    Reply { status, head: head.to_ascii_lowercase(), body }
}

#[track_caller]
fn assert_json_error(r: &Reply, status: u16, code: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: {} {}", r.head, r.body);
    assert!(r.head.contains("content-type: application/json"), "{what}: {}", r.head);
    assert_eq!(r.body["error"]["code"], code, "{what}: {}", r.body);
    assert!(r.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", r.body);
}

#[tokio::test]
async fn the_local_servers_own_rejections_are_json() {
    let aws = aws().await;
    let (table, _) = channel_table(&aws).await;
    let assets = unique("assets");
    streamstack_core::DynamoAssetStore::new(aws.dynamodb.clone(), &assets)
        .create_table_if_missing()
        .await
        .expect("assets table");
    let api = Service::start(
        "channels-api-local",
        &["--listen", "127.0.0.1:{port}"],
        &[("CHANNELS_TABLE", &table), ("ASSETS_TABLE", &assets)],
    )
    .await;
    let port = api.port;

    // Well-formed requests still work, with a body by length or chunked.
    let r =
        raw(port, b"GET /channels HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n", false).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let body = br#"{"name":"a"}"#;
    let req = format!(
        "POST /channels HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
        body.len(),
        String::from_utf8_lossy(body)
    );
    assert_eq!(raw(port, req.as_bytes(), false).await.status, 201);
    let req = "POST /channels HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\nc\r\n{\"name\":\"b\"}\r\n0\r\n\r\n";
    assert_eq!(raw(port, req.as_bytes(), false).await.status, 201);

    let post = |headers: &str| {
        format!("POST /channels HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\n{headers}\r\n{{\"name\":\"c\"}}")
    };
    for (what, request, half_close) in [
        ("garbage request line", "GARBAGE\r\n\r\n".to_owned(), false),
        ("no version", "GET /channels\r\n\r\n".to_owned(), false),
        ("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_owned(), false),
        ("doubled Content-Length", post("content-length: 12\r\ncontent-length: 12\r\n"), false),
        ("Content-Length list", post("content-length: 12, 12\r\n"), false),
        ("negative Content-Length", post("content-length: -12\r\n"), false),
        ("Content-Length not a number", post("content-length: twelve\r\n"), false),
        (
            "Content-Length and chunked",
            post("content-length: 12\r\ntransfer-encoding: chunked\r\n"),
            false,
        ),
        ("body shorter than Content-Length", post("content-length: 100\r\n"), true),
        (
            "head cut short",
            "GET /channels HTTP/1.1\r\nhost: x\r\nconnection: close\r\n".to_owned(),
            true,
        ),
    ] {
        let r = raw(port, request.as_bytes(), half_close).await;
        assert_json_error(&r, 400, "invalid_request", what);
    }

    let r = raw(port, b"GET /channels/%FF HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n", false)
        .await;
    assert_json_error(&r, 400, "invalid_parameter", "non-UTF-8 path id");

    let long = format!(
        "GET /channels?x={} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        "a".repeat(20_000)
    );
    assert_json_error(&raw(port, long.as_bytes(), false).await, 414, "uri_too_long", "long URI");

    let big = format!(
        "GET /channels HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-big: {}\r\n\r\n",
        "a".repeat(40_000)
    );
    let r = raw(port, big.as_bytes(), false).await;
    assert_json_error(&r, 431, "headers_too_large", "big header");
    // Rejected after reading only part of the request, while the client is still sending
    // (no half-close): the answer still arrives, with no reset.
    let long = format!(
        "GET /channels?x={} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        "a".repeat(40_000)
    );
    let r = raw_while_sending(port, long.as_bytes(), 20_000).await;
    assert_json_error(&r, 414, "uri_too_long", "long URI, client still sending");
    let big = format!(
        "GET /channels HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-big: {}\r\n\r\n",
        "a".repeat(60_000)
    );
    let r = raw_while_sending(port, big.as_bytes(), 40_000).await;
    assert_json_error(&r, 431, "headers_too_large", "big header, client still sending");

    // Empty lines before the request line are ignored (RFC 9112 §2.2), not a hang.
    let r =
        raw(port, b"\r\n\r\nGET /channels HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n", false)
            .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let many: String = (0..120).map(|i| format!("x-h{i}: 1\r\n")).collect();
    let r = raw(port, format!("GET /channels HTTP/1.1\r\n{many}\r\n").as_bytes(), false).await;
    assert_json_error(&r, 431, "headers_too_large", "120 header fields");

    // A body really over the limit is 413, by Content-Length or by what arrives.
    let huge = format!(r#"{{"name":"{}"}}"#, "a".repeat(70_000));
    let req = format!(
        "{}{}",
        post(&format!("content-length: {}\r\n", huge.len())).trim_end_matches("{\"name\":\"c\"}"),
        huge
    );
    assert_json_error(&raw(port, req.as_bytes(), false).await, 413, "payload_too_large", "70 kB");

    // The server is still serving.
    let r =
        raw(port, b"GET /channels HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n", false).await;
    assert_eq!(r.status, 200, "{}", r.body);
}
