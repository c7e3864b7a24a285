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
mod tests;
