//! The pool's listener: every accepted connection is wrapped so that the
//! answers the HTTP server gives on its own, before any route or middleware
//! sees the request, are `application/problem+json` like every other error
//! (docs/pool.md, "Errors").
//!
//! hyper refuses a request it cannot parse with an empty-bodied answer and
//! closes the connection: 400 for a malformed request line or header, 414
//! for a URI over 64 KiB, 431 for a head over its buffer (about 400 KiB).
//! Those limits live inside hyper and cannot be handed to a middleware, so
//! the one place left is the bytes it writes: an answer whose head is exactly
//! such an automatic one (one of those statuses, no header beyond
//! `content-length: 0`, `connection: close` and `date`) is replaced, whole, by the same status
//! with a problem body. No route of the pool answers an error without a
//! body, so nothing else matches.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::serve::Listener;
use stockroom_protocol::api::{PROBLEM_CONTENT_TYPE, Problem, ProblemKind};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// A TCP listener whose connections answer parse errors with problem+json.
pub struct ProblemListener(pub TcpListener);

impl Listener for ProblemListener {
    type Io = ProblemIo<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = Listener::accept(&mut self.0).await;
        (ProblemIo::new(io), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Listener::local_addr(&self.0)
    }
}

/// A connection that rewrites the HTTP server's automatic error answers.
pub struct ProblemIo<S> {
    inner: S,
    /// A replacement being written: its bytes, how many are out, and the
    /// length of the original answer to report once all are.
    pending: Option<(Vec<u8>, usize, usize)>,
    /// Set once a replacement went out: at shutdown the rest of the refused
    /// request is read and dropped until the client closes or this deadline
    /// passes ("lingering close"), so that the client's unsent bytes do not
    /// make the kernel reset the connection and lose the answer.
    linger: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The write side was shut down.
    shut: bool,
}

/// How long a refused request's remaining bytes are read at most.
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

impl<S> ProblemIo<S> {
    pub fn new(inner: S) -> Self {
        ProblemIo {
            inner,
            pending: None,
            linger: None,
            shut: false,
        }
    }
}

/// The problem answer standing in for an automatic `head`, if it is one.
fn replacement(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?;
    let (head, rest) = text.split_once("\r\n\r\n")?;
    if !rest.is_empty() {
        return None;
    }
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let code: u16 = status_line
        .strip_prefix("HTTP/1.1 ")?
        .get(..3)?
        .parse()
        .ok()?;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        match name.to_ascii_lowercase().as_str() {
            "content-length" if value.trim() == "0" => {}
            "connection" if value.trim().eq_ignore_ascii_case("close") => {}
            "date" => {}
            _ => return None,
        }
    }
    let (kind, detail) = match code {
        400 => (
            ProblemKind::InvalidRequest,
            "the request is not valid HTTP/1.1: its request line or a header is malformed",
        ),
        414 => (
            ProblemKind::InvalidRequest,
            "the request's URI is over the HTTP server's limit of 64 KiB (the pool answers paths \
             and queries of at most 8 KiB)",
        ),
        431 => (
            ProblemKind::TooLarge,
            "the request's head (request line and headers) is over the HTTP server's limit of \
             about 400 KiB",
        ),
        _ => return None,
    };
    let mut problem = Problem::new(kind, detail);
    problem.status = code;
    let body = serde_json::to_vec(&problem).ok()?;
    let reason = &status_line["HTTP/1.1 ".len()..];
    let mut out = format!(
        "HTTP/1.1 {reason}\r\ncontent-type: {PROBLEM_CONTENT_TYPE}\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    tracing::debug!(
        status = code,
        "answered a request the HTTP server could not parse"
    );
    Some(out)
}

impl<S: AsyncWrite + Unpin> ProblemIo<S> {
    /// Writes the pending replacement out; `Ready(Ok(n))` with the original
    /// answer's length once it all is.
    fn drive_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        while let Some((bytes, written, _)) = &mut self.pending {
            if *written == bytes.len() {
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        let reported = self.pending.take().map_or(0, |(_, _, r)| r);
        self.linger = Some(Box::pin(tokio::time::sleep(LINGER)));
        Poll::Ready(Ok(reported))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ProblemIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ProblemIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.pending.is_none()
            && let Some(out) = replacement(buf)
        {
            self.pending = Some((out, 0, buf.len()));
        }
        if self.pending.is_some() {
            return self.drive_pending(cx);
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.pending.is_none() {
            // An automatic answer is a head alone: one buffer.
            let mut nonempty = bufs.iter().filter(|b| !b.is_empty());
            if let (Some(only), None) = (nonempty.next(), nonempty.next())
                && let Some(out) = replacement(only)
            {
                self.pending = Some((out, 0, only.len()));
            }
        }
        if self.pending.is_some() {
            return self.drive_pending(cx);
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.shut {
            ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            this.shut = true;
        }
        if let Some(deadline) = &mut this.linger {
            let mut scratch = [0u8; 8192];
            loop {
                if deadline.as_mut().poll(cx).is_ready() {
                    break;
                }
                let mut buf = ReadBuf::new(&mut scratch);
                match Pin::new(&mut this.inner).poll_read(cx, &mut buf) {
                    Poll::Ready(Ok(())) if !buf.filled().is_empty() => {}
                    // The client closed, or the connection failed: done.
                    Poll::Ready(_) => break,
                    Poll::Pending => return Poll::Pending,
                }
            }
            this.linger = None;
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::replacement;

    #[test]
    fn only_the_servers_own_empty_answers_are_replaced() {
        let auto = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 02:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(replacement(auto).expect("replaced")).expect("utf-8");
        assert!(
            out.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{out}"
        );
        assert!(
            out.contains("content-type: application/problem+json\r\n"),
            "{out}"
        );
        let body = out.split_once("\r\n\r\n").expect("a body").1;
        let v: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(v["status"], 431);
        assert!(out.contains(&format!("content-length: {}\r\n", body.len())));
        // A route's answer (a content type, a body), another status, a head
        // followed by body bytes: left alone.
        for other in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}",
            b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n",
        ] {
            assert!(replacement(other).is_none(), "{}", String::from_utf8_lossy(other));
        }
    }
}
