//! URL parsing and a loopback source fed by our own muxer. Multicast (which needs a network
//! namespace with a multicast route) is tested in `tests/tests/pull_udp.rs`.

use super::*;
use crate::ingest::mpegts::tests::{stream, tables, with_tables};
use crate::media::Track;
use mpeg2ts::es::StreamType;

async fn target(url: &str) -> UdpTarget {
    parse_url(url).await.unwrap_or_else(|e| panic!("{url}: {e}"))
}

async fn refused(url: &str) -> String {
    match parse_url(url).await {
        Err(SourceError::InvalidUrl(why)) => why,
        other => panic!("{url}: {other:?}"),
    }
}

#[tokio::test]
async fn parses_unicast_and_multicast_urls() {
    let t = target("udp://127.0.0.1:5000").await;
    assert_eq!((t.bind, t.membership, t.program), ("127.0.0.1:5000".parse().unwrap(), None, None));
    assert_eq!(target("udp://0.0.0.0:5000/").await.bind, "0.0.0.0:5000".parse().unwrap());
    assert_eq!(target("udp://[::1]:5000").await.bind, "[::1]:5000".parse().unwrap());
    assert_eq!(target("udp://localhost:5000").await.bind.port(), 5000);
    let t = target("udp://239.1.2.3:5000?program=7").await;
    assert_eq!(t.bind, "239.1.2.3:5000".parse().unwrap());
    assert_eq!(
        t.membership,
        Some(Membership {
            group: Ipv4Addr::new(239, 1, 2, 3),
            source: None,
            interface: Ipv4Addr::UNSPECIFIED
        })
    );
    assert_eq!(t.program, Some(7));
    let t = target("udp://232.1.1.1:5000?source=10.0.0.1&interface=192.168.1.2").await;
    assert_eq!(
        t.membership,
        Some(Membership {
            group: Ipv4Addr::new(232, 1, 1, 1),
            source: Some(Ipv4Addr::new(10, 0, 0, 1)),
            interface: Ipv4Addr::new(192, 168, 1, 2)
        })
    );
}

#[tokio::test]
async fn refuses_what_it_would_ignore() {
    assert!(refused("udp://232.1.1.1:5000?pkt_size=1316").await.contains("unknown parameter"));
    assert!(refused("udp://232.1.1.1:5000?source=1.1.1.1&source=2.2.2.2")
        .await
        .contains("repeated"));
    assert!(refused("udp://232.1.1.1").await.contains("port"));
    assert!(refused("udp://232.1.1.1:5000?source=eth0").await.contains("IPv4"));
    assert!(refused("udp://232.1.1.1:5000?program=x").await.contains("program"));
    assert!(refused("udp://127.0.0.1:5000?source=10.0.0.1").await.contains("multicast"));
    assert!(refused("udp://[ff02::1]:5000").await.contains("IPv6 multicast"));
    assert!(refused("udp://127.0.0.1:5000/stream").await.contains("path"));
    let why = refused("udp://user:secret@127.0.0.1:5000").await;
    assert!(!why.contains("secret"), "{why}");
    assert!(refused("rtsp://127.0.0.1:5000").await.contains("udp://"));
}

/// A source on a free loopback port and a socket sending to it.
async fn loopback(options: &UdpOptions) -> (UdpSource, std::net::UdpSocket) {
    let source = open("udp://127.0.0.1:0", options).await.unwrap();
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.connect(source.local_addr().unwrap()).unwrap();
    (source, sender)
}

#[tokio::test]
async fn receives_datagrams_into_tracks_and_frames() {
    let (mut source, sender) = loopback(&UdpOptions::default()).await;
    let (ts, sent) = stream(30, 0);
    let mut bytes = 0;
    for datagram in ts.chunks(7 * 188) {
        bytes += sender.send(datagram).unwrap() as u64;
    }
    let mut events = Vec::new();
    // The last video frame completes only with a later PES: all but one.
    while events.len() < 1 + sent.len() - 1 {
        events.push(source.next_event().await.unwrap().unwrap());
    }
    assert!(matches!(&events[0], MediaEvent::Tracks(t) if t.video.is_some() && t.audio.is_some()));
    let video = events
        .iter()
        .filter(|e| matches!(e, MediaEvent::Frame(f) if f.track == Track::Video))
        .count();
    assert_eq!(video, 29);
    assert_eq!(source.bytes_in(), bytes);
    assert_eq!(source.stats().cc_errors, 0);
}

#[tokio::test]
async fn silence_is_a_timeout_and_h265_is_unsupported() {
    let options =
        UdpOptions { receive_timeout: Duration::from_millis(200), ..UdpOptions::default() };
    let (mut source, sender) = loopback(&options).await;
    let started = Instant::now();
    assert!(matches!(source.next_event().await, Err(SourceError::Timeout(_))));
    assert!(started.elapsed() < Duration::from_secs(2));

    let h265 = with_tables(tables(&[(1, 0x1000, &[(StreamType::H265, 0x100)])]));
    for datagram in h265.chunks(7 * 188) {
        sender.send(datagram).unwrap();
    }
    match source.next_event().await {
        Err(e @ SourceError::Unsupported(_)) => {
            assert!(e.is_permanent());
            assert!(e.to_string().contains("H.265"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}
