//! Unit tests of [`super`] (local.rs).

use super::*;

fn code(head: &str) -> Option<&'static str> {
    check_head(head.as_bytes()).err().map(|e| e.status_and_code().1)
}

#[test]
fn request_heads() {
    assert_eq!(code("GET /channels HTTP/1.1\r\nHost: x\r\n\r\n"), None);
    assert_eq!(code("POST /channels HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}"), None);
    assert_eq!(code("GET /channels HTTP/1.0\n\n"), None);
    for bad in [
        "GARBAGE\r\n\r\n",
        "GET /x\r\n\r\n",
        "GET /x HTTP/9\r\n\r\n",
        "G(T /x HTTP/1.1\r\n\r\n",
        "GET /x HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 1\r\n\r\n",
        "GET /x HTTP/1.1\r\ncontent-length: -1\r\n\r\n",
        "GET /x HTTP/1.1\r\ncontent-length: 1, 1\r\n\r\n",
        "GET /x HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n",
        "GET /x HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 1\r\n\r\n",
        "GET /x HTTP/1.1\r\nno colon\r\n\r\n",
        "GET /x HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
        "GET /x HTTP/1.1\r\n",
    ] {
        assert_eq!(code(bad), Some("invalid_request"), "{bad:?}");
    }
    let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_URI_BYTES));
    assert_eq!(code(&long), Some("uri_too_long"));
    let cut = format!("GET /{}", "a".repeat(MAX_URI_BYTES + 40));
    assert_eq!(code(&cut), Some("uri_too_long"));
    let big = format!("GET / HTTP/1.1\r\nx: {}\r\n\r\n", "a".repeat(MAX_HEAD_BYTES));
    assert_eq!(code(&big), Some("headers_too_large"));
    let many: String = (0..=MAX_HEADERS).map(|i| format!("x{i}: 1\r\n")).collect();
    assert_eq!(code(&format!("GET / HTTP/1.1\r\n{many}\r\n")), Some("headers_too_large"));
}

#[test]
fn content_length_values() {
    use crate::extract::parse_content_length as cl;
    assert_eq!(cl(b"12"), Some(12));
    assert_eq!(cl(b" 0 "), Some(0));
    assert_eq!(cl(b"9999999999999999999"), Some(9_999_999_999_999_999_999));
    for bad in [&b""[..], b"-1", b"+1", b"1, 1", b"1 1", b"twelve", b"10000000000000000000"] {
        assert_eq!(cl(bad), None, "{bad:?}");
    }
}

#[test]
fn head_scan_is_incremental_and_skips_leading_empty_lines() {
    let heads: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody",
        b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\nbody",
        b"\n\nGET / HTTP/1.0\n\nbody",
        b"\r\nGET / HTTP/1.1\r\n\r\nbody",
    ];
    for head in heads {
        let whole = head_end(head);
        assert_eq!(whole, Some(head.len() - 4), "{head:?}");
        // Fed one byte at a time, each byte is examined once and the end is the same.
        let mut scan = HeadScan::default();
        let mut found = None;
        for n in 1..=head.len() {
            let before = scan.pos;
            if let Some(end) = scan.advance(&head[..n]) {
                found = Some(end);
                break;
            }
            assert_eq!((before, scan.pos), (n - 1, n));
        }
        assert_eq!(found, whole, "{head:?}");
        let start = scan.request_start();
        assert!(head[start..].starts_with(b"GET "), "{head:?}");
    }
    assert_eq!(head_end(b"\r\n\r\n\r\n"), None);
}

fn app() -> Router {
    Router::new()
        .route("/", axum::routing::get(|| async { "ok" }))
        .route("/echo", axum::routing::post(|body: String| async move { body }))
}

const TEST_LIMITS: Limits = Limits {
    max_connections: 8,
    head_timeout: Duration::from_millis(300),
    connection_timeout: Duration::from_millis(600),
};

/// A server on a fresh port with `limits`; the first `failures` accepts fail with EMFILE.
async fn start(limits: Limits, failures: usize) -> std::net::SocketAddr {
    let listener = Arc::new(TcpListener::bind("127.0.0.1:0").await.expect("bind"));
    let addr = listener.local_addr().expect("addr");
    let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let accept = move || {
        let (listener, failed) = (Arc::clone(&listener), Arc::clone(&failed));
        async move {
            if failed.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < failures {
                return Err(io::Error::from_raw_os_error(24)); // EMFILE
            }
            listener.accept().await.map(|(stream, _)| stream)
        }
    };
    tokio::spawn(serve_with(accept, app(), std::future::pending(), limits));
    addr
}

/// Sends `request` (without closing the write side) and reads until the server closes;
/// fails on a reset, which would lose the answer.
async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes within 5 s")
        .expect("a clean close, not a reset");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn accept_errors_do_not_stop_the_server() {
    let addr = start(TEST_LIMITS, 3).await;
    let answer = exchange(addr, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn leading_empty_lines_are_ignored() {
    let addr = start(TEST_LIMITS, 0).await;
    let answer = exchange(addr, b"\r\n\r\nGET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok"), "{answer}");
}

#[tokio::test]
async fn a_head_not_finished_in_time_is_answered_408() {
    let addr = start(TEST_LIMITS, 0).await;
    let answer = exchange(addr, b"GET / HTTP/1.1\r\nhost: x\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");
    // Nothing sent: closed without an answer.
    assert_eq!(exchange(addr, b"").await, "");
}

#[tokio::test]
async fn a_slow_body_is_dropped_after_the_connection_timeout() {
    let addr = start(TEST_LIMITS, 0).await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{";
    stream.write_all(head).await.expect("write");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer));
    // Closed (cleanly or not) well before the 5 s, with no answer.
    let _ = read.await.expect("the server drops the connection");
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
}

/// Sends `first`, reads the answer's first bytes, then sends `rest` in two writes (the
/// client still sending when the server has answered) and reads to the end: a server
/// that closes without draining the input resets the connection, and the writes fail.
async fn answered_while_sending(addr: std::net::SocketAddr, first: &[u8], rest: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(first).await.expect("write");
    let mut answer = vec![0u8; 12];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut answer));
    read.await.expect("an answer within 5 s").expect("read the status line");
    let (a, b) = rest.split_at(rest.len() / 2);
    stream.write_all(a).await.expect("the server still reads (lingering close)");
    tokio::time::sleep(Duration::from_millis(50)).await;
    stream.write_all(b).await.expect("the server still reads (lingering close): no reset");
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("the server closes within 5 s")
        .expect("a clean close, not a reset");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn oversized_heads_are_answered_without_a_reset() {
    let addr = start(TEST_LIMITS, 0).await;
    let long = format!("GET /?x={} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(40_000));
    let answer = exchange(addr, long.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 414"), "{answer}");
    let rest = format!("{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(20_000));
    let answer = answered_while_sending(addr, &long.as_bytes()[..20_000], rest.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 414"), "{answer}");
    assert!(answer.contains(r#""code":"uri_too_long""#), "{answer}");
    let big = format!("GET / HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n", "a".repeat(60_000));
    let answer = exchange(addr, big.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let answer =
        answered_while_sending(addr, &big.as_bytes()[..40_000], &big.as_bytes()[40_000..]).await;
    assert!(answer.contains(r#""code":"headers_too_large""#), "{answer}");
}

#[tokio::test]
async fn connections_over_the_cap_wait() {
    let addr = start(Limits { max_connections: 1, ..TEST_LIMITS }, 0).await;
    // The one slot is held by an idle connection until its head timeout (300 ms).
    let idle = TcpStream::connect(addr).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let answer = exchange(addr, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(started.elapsed() >= Duration::from_millis(200), "{:?}", started.elapsed());
    drop(idle);
}
