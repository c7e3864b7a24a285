//! The local HTTP/1.1 server of the API (`channels-api-local`): the router behind a small
//! request-head check, so the server's own rejections are the API's JSON errors too.
//!
//! hyper answers a request it cannot parse (a garbage request line, a bad or doubled
//! `Content-Length`, a URI or header section over its limits) itself, with an empty body.
//! Here each connection's request head is read first (at most [`MAX_HEAD_BYTES`], within
//! [`HEAD_TIMEOUT`]) and checked: a malformed one gets `400 invalid_request`, a request target
//! over [`MAX_URI_BYTES`] `414 uri_too_long`, a header section over [`MAX_HEAD_BYTES`] or
//! [`MAX_HEADERS`] fields `431 headers_too_large`, each with the JSON error body, and the
//! connection is closed. A head that passes goes to hyper with the router; every connection
//! carries one request (`Connection: close`), so every request is checked.
//!
//! In AWS, API Gateway parses HTTP and answers these cases itself before the Lambda runs.

use crate::error::ApiError;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Longest request target (path and query), in bytes.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Largest request head (request line and header fields), in bytes.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;
/// Most header fields in a request.
pub const MAX_HEADERS: usize = 64;
/// Time a client has to send its whole request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` until `shutdown` completes.
///
/// # Errors
/// When accepting connections fails.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut shutdown => return Ok(()),
        };
        let app = app.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, app).await {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
}

async fn connection(mut stream: TcpStream, app: Router) -> io::Result<()> {
    let head = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await {
        Err(_) => return Ok(()),
        Ok(head) => head?,
    };
    let Some(head) = head else { return Ok(()) };
    if let Err(error) = check_head(&head) {
        return reject(stream, &error).await;
    }
    let io = TokioIo::new(Prefixed { prefix: head, pos: 0, inner: stream });
    http1::Builder::new()
        .keep_alive(false)
        .half_close(true)
        .serve_connection(io, TowerToHyperService::new(app))
        .await
        .map_err(io::Error::other)
}

/// Reads until the end of the request head (an empty line) or [`MAX_HEAD_BYTES`] + 1 bytes;
/// `None` when the client sent nothing. What is read past the head (a body) is kept.
async fn read_head(stream: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok((!buf.is_empty()).then_some(buf));
        }
        buf.extend_from_slice(&chunk[..n]);
        if head_end(&buf).is_some() || buf.len() > MAX_HEAD_BYTES {
            return Ok(Some(buf));
        }
        // A request line already longer than any accepted target cannot succeed.
        if !buf.contains(&b'\n') && buf.len() > MAX_URI_BYTES + 32 {
            return Ok(Some(buf));
        }
    }
}

/// Index just past the empty line ending the head (`\r\n\r\n` or `\n\n`).
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    for (i, &b) in buf.iter().enumerate() {
        if b == b'\n' {
            let line = &buf[line_start..i];
            if line.is_empty() || line == b"\r" {
                // The request line itself is never empty (leading empty lines are refused).
                return (line_start > 0).then_some(i + 1);
            }
            line_start = i + 1;
        }
    }
    None
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
    let (mut content_length, mut chunked) = (None::<&[u8]>, false);
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
            let digits =
                !value.is_empty() && value.len() <= 19 && value.iter().all(u8::is_ascii_digit);
            if content_length.is_some() || !digits {
                return Err(bad("Content-Length must be one decimal number, sent once"));
            }
            content_length = Some(value);
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
async fn reject(mut stream: TcpStream, error: &ApiError) -> io::Result<()> {
    let (status, _) = error.status_and_code();
    let body = error.body().to_string();
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
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
}
