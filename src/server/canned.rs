//! Problem bodies for hyper's own refusals.
//!
//! hyper answers a request it cannot parse by itself, before any handler
//! runs: `400` (a space or control character in the request line or a
//! header), `414` (a request target too long), `431` (a head larger than
//! `server.write_buffer`, or too many headers) — each with an empty body and
//! `connection: close`. Every refusal Tollgate sends is an RFC 9457 problem
//! with a stable `code`, so this wrapper recognises those canned answers as
//! they are written and writes a problem in their place. Nothing else is
//! touched: the gateway's own responses always carry a body when refusing.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The canned answers this rewrites: status, code, detail.
const CANNED: [(u16, &str, &str); 3] = [
    (400, "bad_request", "The request line or a header is malformed (a space or control character where none may be)."),
    (414, "uri_too_long", "The request target is too long."),
    (431, "headers_too_large", "The request head is too large, or has too many header fields."),
];

/// A connection whose canned `400`/`414`/`431` answers become problems.
#[derive(Debug)]
pub struct ProblemBodies<T> {
    inner: T,
    /// A rewritten answer still being written, and how far it got.
    pending: Option<(Vec<u8>, usize)>,
}

impl<T> ProblemBodies<T> {
    pub fn new(inner: T) -> Self {
        Self { inner, pending: None }
    }
}

/// The problem response for a canned answer `head`, if it is one.
fn rewrite(head: &[u8]) -> Option<Vec<u8>> {
    // Small, one complete head, closing the connection, with no body.
    if head.len() > 512 || !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    let text = std::str::from_utf8(head).ok()?;
    let status: u16 = text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    let lower = text.to_ascii_lowercase();
    if !lower.contains("\r\nconnection: close\r\n") || !lower.contains("\r\ncontent-length: 0\r\n") {
        return None;
    }
    let (_, code, detail) = CANNED.iter().find(|(s, _, _)| *s == status)?;
    let title = text.lines().next()?.get(13..)?.trim();
    let date = text.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("date").then(|| value.trim().to_owned())
    });
    let body = serde_json::json!({
        "type": format!("urn:tollgate:problem:{code}"),
        "title": title,
        "status": status,
        "code": code,
        "detail": detail,
    })
    .to_string();
    let mut out = format!(
        "HTTP/1.1 {status} {title}\r\ncontent-type: application/problem+json\r\ncache-control: no-store\r\n\
         connection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    if let Some(date) = date {
        out.push_str(&format!("date: {date}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&body);
    Some(out.into_bytes())
}

impl<T: AsyncWrite + Unpin> ProblemBodies<T> {
    /// Write what is left of a rewritten answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.pending {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
            if *written == bytes.len() {
                self.pending = None;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Take `buf` as written, a problem answer in its place, if it is a
    /// canned answer.
    fn replaced(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Option<Poll<io::Result<usize>>> {
        let problem = rewrite(buf)?;
        self.pending = Some((problem, 0));
        Some(match self.poll_pending(cx) {
            // Written, or partly so (the rest goes with the next write or
            // flush): hyper's bytes count as written either way.
            Poll::Ready(Ok(())) | Poll::Pending => Poll::Ready(Ok(buf.len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        })
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ProblemBodies<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ProblemBodies<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if buf.starts_with(b"HTTP/1.1 4")
            && let Some(done) = self.replaced(cx, buf)
        {
            return done;
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        // Cheap test first: only a small write starting a 4xx head is looked at.
        let refusal = bufs.iter().find(|b| !b.is_empty()).is_some_and(|b| b.starts_with(b"HTTP/1.1 4"));
        if refusal && total <= 512 {
            let joined: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            if let Some(done) = self.replaced(cx, &joined) {
                return done;
            }
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    #[test]
    fn canned_answers_become_problems_and_nothing_else_does() {
        let canned =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 19:12:38 GMT\r\n\r\n";
        let out = String::from_utf8(rewrite(canned).unwrap()).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "{head}");
        assert!(head.contains("content-type: application/problem+json"), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        assert!(head.contains("date: Wed, 02 Dec 2026 19:12:38 GMT"), "{head}");
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!((v["status"].as_u64(), v["code"].as_str()), (Some(431), Some("headers_too_large")));
        // The gateway's own answers are left alone: a body, no close, another status.
        for other in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\ncontent-length: 90\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 412 Precondition Failed\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n",
        ] {
            assert!(rewrite(other).is_none(), "{}", String::from_utf8_lossy(other));
        }
    }
}
