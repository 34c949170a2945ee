//! Connections. hyper answers some HTTP/1 requests itself, before any handler runs, with an
//! empty body and `connection: close`: 400 for a request line or header it cannot parse (raw
//! non-ASCII bytes in the path or query, a method or header name with forbidden characters),
//! 414 for a URI over 65,534 bytes, 431 for headers over its buffer or more than 100 of them.
//! [`OutcomeListener`] wraps each connection so that such an answer leaves with an
//! OperationOutcome body instead. It is recognised exactly: an error status line followed only
//! by `connection`, `content-length: 0` and `date` — the server's own answers always carry
//! more headers (the security headers of every response), so they are never touched.

use crate::errors::{default_reason, outcome_json};
use axum::http::StatusCode;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A listener for `axum::serve` whose connections are [`OutcomeIo`]s.
pub struct OutcomeListener<L>(L);

impl<L> OutcomeListener<L> {
    pub fn new(inner: L) -> OutcomeListener<L> {
        OutcomeListener(inner)
    }
}

impl<L: axum::serve::Listener> axum::serve::Listener for OutcomeListener<L> {
    type Io = OutcomeIo<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.0.accept().await;
        (OutcomeIo::new(io), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// A connection whose bare automatic error answers get an OperationOutcome body.
pub struct OutcomeIo<T> {
    inner: T,
    /// The replacement being written, how much of it is written, and how many bytes of the
    /// caller's buffer it stands for.
    pending: Vec<u8>,
    written: usize,
    stands_for: usize,
}

impl<T> OutcomeIo<T> {
    pub fn new(inner: T) -> OutcomeIo<T> {
        OutcomeIo {
            inner,
            pending: Vec::new(),
            written: 0,
            stands_for: 0,
        }
    }
}

impl<T: AsyncWrite + Unpin> OutcomeIo<T> {
    /// Write the rest of the replacement.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for OutcomeIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for OutcomeIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.pending.is_empty() {
            match with_outcome(buf) {
                Some(answer) => (this.pending, this.stands_for) = (answer, buf.len()),
                None => return Pin::new(&mut this.inner).poll_write(cx, buf),
            }
        }
        ready!(this.drain(cx))?;
        Poll::Ready(Ok(this.stands_for))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        match (filled.next(), filled.next()) {
            // An automatic answer is written as one piece (the head, without a body).
            (Some(one), None) if !self.pending.is_empty() || with_outcome(one).is_some() => {
                self.poll_write(cx, one)
            }
            _ => Pin::new(&mut self.inner).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The answer to send instead of `head` when `head` is one of hyper's bare automatic error
/// answers; `None` otherwise.
fn with_outcome(head: &[u8]) -> Option<Vec<u8>> {
    // Cheap refusals first: this sees every write of the connection.
    let error_status = head.len() >= 12 && matches!(head[9], b'4' | b'5');
    if head.len() > 512 || !error_status || !head.starts_with(b"HTTP/1.") {
        return None;
    }
    let text = std::str::from_utf8(head).ok()?;
    let lines = text.strip_suffix("\r\n\r\n")?;
    if lines.contains("\r\n\r\n") {
        return None;
    }
    let mut lines = lines.split("\r\n");
    let status_line = lines.next()?;
    let version = status_line
        .get(..9)
        .filter(|v| *v == "HTTP/1.1 " || *v == "HTTP/1.0 ")?;
    let status = StatusCode::from_bytes(status_line.get(9..12)?.as_bytes()).ok()?;
    if !(status.is_client_error() || status.is_server_error()) {
        return None;
    }
    let mut date = None;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        match (name.to_ascii_lowercase().as_str(), value.trim()) {
            ("content-length", "0") | ("connection", _) => {}
            ("date", d) => date = Some(d),
            _ => return None,
        }
    }
    let body = outcome_json(status, &default_reason(status));
    let mut out = format!(
        "{version}{status_line}\r\ncontent-type: {ct}\r\ncontent-length: {len}\r\n\
         connection: close\r\nx-content-type-options: nosniff\r\n",
        status_line = &status_line[9..],
        ct = crate::format::FHIR_JSON,
        len = body.len(),
    );
    if let Some(d) = date {
        out.push_str(&format!("date: {d}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(&body);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bare_automatic_answers_are_replaced() {
        let bare = b"HTTP/1.1 414 URI Too Long\r\nconnection: close\r\ncontent-length: 0\r\ndate: Thu, 03 Dec 2026 17:24:57 GMT\r\n\r\n";
        let out = String::from_utf8(with_outcome(bare).unwrap()).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{head}");
        assert!(
            head.contains("content-type: application/fhir+json"),
            "{head}"
        );
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        assert!(head.contains("date: Thu, 03 Dec 2026"), "{head}");
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["resourceType"], "OperationOutcome");
        assert_eq!(v["issue"][0]["code"], "too-long");
        // The server's own answers, successes, and heads followed by a body pass unchanged.
        for other in [
            &b"HTTP/1.1 404 Not Found\r\ncontent-type: application/fhir+json\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nextra",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 5\r\n\r\n",
            b"\x00\x00\x12\x04",
        ] {
            assert!(with_outcome(other).is_none(), "{other:?}");
        }
    }
}
