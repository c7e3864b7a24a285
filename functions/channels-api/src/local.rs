//! The local HTTP/1.1 server of the API (`channels-api-local`): the router behind a small
//! request-head check, so the server's own rejections are the API's JSON errors too.
//!
//! hyper answers a request it cannot parse (a garbage request line, a bad or doubled
//! `Content-Length`, a URI or header section over its limits) itself, with an empty body.
//! Here each connection's request head is read first (at most [`MAX_HEAD_BYTES`], within
//! [`HEAD_TIMEOUT`]) and checked: a malformed one gets `400 invalid_request`, a request target
//! over [`MAX_URI_BYTES`] `414 uri_too_long`, a header section over [`MAX_HEAD_BYTES`] or
//! [`MAX_HEADERS`] fields `431 headers_too_large`, a head not complete within
//! [`HEAD_TIMEOUT`] `408 request_timeout`, each with the JSON error body, and the connection
//! is closed (a lingering close: the unread rest of the request is drained for a moment, so
//! the client reads the answer instead of a reset). Empty lines before the request line are
//! ignored (RFC 9112 §2.2). A head that passes goes to hyper with the router; every
//! connection carries one request (`Connection: close`), so every request is checked, and
//! lives at most [`CONNECTION_TIMEOUT`]. At most [`MAX_CONNECTIONS`] connections are served
//! at once (more wait in the listen backlog); a failed accept (out of file descriptors, a
//! connection aborted) is logged and retried, it never stops the server.
//!
//! In AWS, API Gateway parses HTTP and answers these cases itself before the Lambda runs.

use crate::error::ApiError;
use axum::http::StatusCode;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// Longest request target (path and query), in bytes.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Largest request head (request line and header fields), in bytes.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;
/// Most header fields in a request.
pub const MAX_HEADERS: usize = 64;
/// Time a client has to send its whole request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Time a connection may take in all (head, body, answer) before it is dropped.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections served at once; more wait (in the listen backlog) until one ends.
pub const MAX_CONNECTIONS: usize = 512;
/// Pause after a failed accept (e.g. out of file descriptors) before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// After a rejection: longest time the rest of the request is drained before closing.
const LINGER_TIME: Duration = Duration::from_secs(1);
/// After a rejection: most bytes drained before closing.
const LINGER_BYTES: usize = 64 * 1024;

/// The limits [`serve`] applies (shorter ones in tests).
#[derive(Clone, Copy)]
struct Limits {
    max_connections: usize,
    head_timeout: Duration,
    connection_timeout: Duration,
}

const LIMITS: Limits = Limits {
    max_connections: MAX_CONNECTIONS,
    head_timeout: HEAD_TIMEOUT,
    connection_timeout: CONNECTION_TIMEOUT,
};

/// Serves `app` on `listener` until `shutdown` completes.
///
/// # Errors
/// None in practice: a failed accept is logged and retried after a short pause.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let listener = Arc::new(listener);
    let accept = move || {
        let listener = Arc::clone(&listener);
        async move { listener.accept().await.map(|(stream, _)| stream) }
    };
    serve_with(accept, app, shutdown, LIMITS).await;
    Ok(())
}

async fn serve_with<A, F>(
    mut accept: A,
    app: Router,
    shutdown: impl Future<Output = ()>,
    limits: Limits,
) where
    A: FnMut() -> F,
    F: Future<Output = io::Result<TcpStream>>,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        // Over the cap, wait for a connection to end before accepting the next one.
        let permit = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => permit.expect("semaphore never closed"),
            () = &mut shutdown => return,
        };
        let accepted = tokio::select! {
            accepted = accept() => accepted,
            () = &mut shutdown => return,
        };
        let stream = match accepted {
            Ok(stream) => stream,
            Err(e) => {
                // EMFILE, ENFILE, ECONNABORTED...: transient; never stop serving for them.
                tracing::warn!(error = %e, "accepting a connection failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    () = &mut shutdown => return,
                }
            }
        };
        let app = app.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, app, limits).await {
                tracing::debug!(error = %e, "connection ended");
            }
            drop(permit);
        });
    }
}

async fn connection(mut stream: TcpStream, app: Router, limits: Limits) -> io::Result<()> {
    let started = Instant::now();
    let mut buf = Vec::with_capacity(4096);
    let head = match tokio::time::timeout(limits.head_timeout, read_head(&mut stream, &mut buf))
        .await
    {
        Err(_) if buf.is_empty() => return Ok(()),
        Err(_) => {
            let message =
                format!("request head not received within {} s", limits.head_timeout.as_secs_f64());
            let body = serde_json::json!({
                "error": { "code": "request_timeout", "message": message }
            });
            return answer_and_close(stream, StatusCode::REQUEST_TIMEOUT, &body).await;
        }
        Ok(head) => head?,
    };
    if !head {
        return Ok(());
    }
    if let Err(error) = check_head(&buf) {
        return reject(stream, &error).await;
    }
    let io = TokioIo::new(Prefixed { prefix: buf, pos: 0, inner: stream });
    let serving = http1::Builder::new()
        .keep_alive(false)
        .half_close(true)
        .serve_connection(io, TowerToHyperService::new(app));
    // A body trickled in, or an answer never read, must not hold the connection forever.
    let left = limits.connection_timeout.saturating_sub(started.elapsed());
    match tokio::time::timeout(left, serving).await {
        Ok(served) => served.map_err(io::Error::other),
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connection took too long")),
    }
}

/// Incremental search for the end of a request head: each byte is looked at once, however
/// the head arrives. Empty lines before the request line are skipped (RFC 9112 §2.2).
#[derive(Default)]
struct HeadScan {
    /// Bytes already examined.
    pos: usize,
    /// Start of the current line.
    line_start: usize,
    /// Whether the request line (the first non-empty line) has ended.
    request_line_done: bool,
    /// Start of the request line, once it has ended.
    request_start: usize,
}

impl HeadScan {
    /// Examines what `buf` (which only grows) holds past the last call; the index just past
    /// the empty line ending the head (`\r\n\r\n` or `\n\n`) once it has arrived.
    fn advance(&mut self, buf: &[u8]) -> Option<usize> {
        while self.pos < buf.len() {
            let i = self.pos;
            self.pos += 1;
            if buf[i] != b'\n' {
                continue;
            }
            let empty = matches!(&buf[self.line_start..i], b"" | b"\r");
            if empty && self.request_line_done {
                return Some(i + 1);
            }
            if !empty && !self.request_line_done {
                self.request_line_done = true;
                self.request_start = self.line_start;
            }
            self.line_start = i + 1;
        }
        None
    }

    /// Where the request line starts: past the empty lines before it (as far as seen).
    fn request_start(&self) -> usize {
        if self.request_line_done {
            self.request_start
        } else {
            self.line_start
        }
    }
}

/// Reads into `buf` until the end of the request head (an empty line) or more than
/// [`MAX_HEAD_BYTES`] bytes; `false` when the client sent nothing. Empty lines before the request line are
/// dropped from `buf`; what is read past the head (a body) is kept.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<bool> {
    let mut chunk = [0u8; 4096];
    let mut scan = HeadScan::default();
    let done = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break !buf.is_empty();
        }
        buf.extend_from_slice(&chunk[..n]);
        if scan.advance(buf).is_some() || buf.len() > MAX_HEAD_BYTES {
            break true;
        }
        // A request line already longer than any accepted target cannot succeed.
        if !scan.request_line_done && buf.len() - scan.line_start > MAX_URI_BYTES + 32 {
            break true;
        }
    };
    let start = scan.request_start();
    buf.drain(..start);
    Ok(done)
}

/// Index just past the empty line ending the head (`\r\n\r\n` or `\n\n`).
fn head_end(buf: &[u8]) -> Option<usize> {
    HeadScan::default().advance(buf)
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Checks a request head read by [`read_head`] (it may carry the start of the body).
fn check_head(buf: &[u8]) -> Result<(), ApiError> {
    let bad = |m: &str| ApiError::InvalidRequest(m.to_owned());
    let first_end = buf.iter().position(|&b| b == b'\n');
    let request_line = &buf[..first_end.unwrap_or(buf.len())];
    let request_line = request_line.strip_suffix(b"\r").unwrap_or(request_line);
    let mut parts = request_line.splitn(3, |&b| b == b' ');
    let (method, target) = (parts.next().unwrap_or_default(), parts.next());
    let method_ok = !method.is_empty() && method.iter().all(|&b| is_tchar(b));
    if let Some(target) = target {
        if method_ok && target.len() > MAX_URI_BYTES {
            return Err(ApiError::UriTooLong(MAX_URI_BYTES));
        }
    }
    let Some(end) = head_end(buf) else {
        if first_end.is_none() && method_ok && target.is_some() {
            return Err(ApiError::UriTooLong(MAX_URI_BYTES));
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Err(ApiError::HeadersTooLarge(MAX_HEAD_BYTES));
        }
        return Err(bad("incomplete request head"));
    };
    if end > MAX_HEAD_BYTES {
        return Err(ApiError::HeadersTooLarge(MAX_HEAD_BYTES));
    }
    let version = parts.next();
    let target = target.unwrap_or_default();
    let target_ok = !target.is_empty() && target.iter().all(|&b| b.is_ascii_graphic());
    if !method_ok || !target_ok || !matches!(version, Some(b"HTTP/1.1" | b"HTTP/1.0")) {
        return Err(bad("malformed request line: expected METHOD SP target SP HTTP/1.1"));
    }
    let mut fields = 0;
    let (mut content_length, mut chunked) = (None::<u64>, false);
    for line in buf[..end].split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        fields += 1;
        if fields > MAX_HEADERS {
            return Err(ApiError::HeadersTooLarge(MAX_HEAD_BYTES));
        }
        let colon = line.iter().position(|&b| b == b':');
        let Some(colon) = colon.filter(|&c| c > 0 && line[..c].iter().all(|&b| is_tchar(b))) else {
            return Err(bad("malformed header field (or obsolete line folding)"));
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if value.iter().any(|&b| b == b'\r' || b == 0 || (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(bad("header field value with control characters"));
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let parsed = crate::extract::parse_content_length(value);
            if content_length.is_some() || parsed.is_none() {
                return Err(bad("Content-Length must be one decimal number, sent once"));
            }
            content_length = parsed;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if chunked || !value.eq_ignore_ascii_case(b"chunked") {
                return Err(bad("Transfer-Encoding: only chunked is accepted"));
            }
            chunked = true;
        }
    }
    if chunked && content_length.is_some() {
        return Err(bad("Content-Length and Transfer-Encoding together"));
    }
    Ok(())
}

/// Answers `error` as JSON and closes the connection.
async fn reject(stream: TcpStream, error: &ApiError) -> io::Result<()> {
    let (status, _) = error.status_and_code();
    answer_and_close(stream, status, &error.body()).await
}

/// Answers `body` as JSON with `status`, then closes the connection the lingering way: the
/// write side is shut down and the rest of the request drained (for at most [`LINGER_TIME`]
/// or [`LINGER_BYTES`]) before the socket is dropped. Closing a socket with unread input
/// sends a reset, and the client could lose the answer to it.
async fn answer_and_close(
    mut stream: TcpStream,
    status: StatusCode,
    body: &serde_json::Value,
) -> io::Result<()> {
    let body = body.to_string();
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.flush().await?;
    stream.shutdown().await?;
    let deadline = Instant::now() + LINGER_TIME;
    let mut chunk = [0u8; 4096];
    let mut drained = 0;
    while drained < LINGER_BYTES {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => break,
        }
    }
    Ok(())
}

/// The connection with the bytes [`read_head`] took from it put back in front.
struct Prefixed {
    prefix: Vec<u8>,
    pos: usize,
    inner: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = (self.prefix.len() - self.pos).min(buf.remaining());
            let pos = self.pos;
            buf.put_slice(&self.prefix[pos..pos + n]);
            self.pos += n;
            if self.pos == self.prefix.len() {
                self.prefix = Vec::new();
                self.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
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
    async fn answered_while_sending(
        addr: std::net::SocketAddr,
        first: &[u8],
        rest: &[u8],
    ) -> String {
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
        let answer =
            answered_while_sending(addr, &long.as_bytes()[..20_000], rest.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 414"), "{answer}");
        assert!(answer.contains(r#""code":"uri_too_long""#), "{answer}");
        let big = format!("GET / HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n", "a".repeat(60_000));
        let answer = exchange(addr, big.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
        let answer =
            answered_while_sending(addr, &big.as_bytes()[..40_000], &big.as_bytes()[40_000..])
                .await;
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
}
