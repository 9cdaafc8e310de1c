//! `multipart/byteranges` (RFC 9110 §14.6): the body of a `206` that
//! answers several ranges. The ranges' bytes arrive from delivery as one
//! stream, counted and guarded there like any download; this only frames
//! them, so the accounting is about the file's bytes, never the framing's.

use std::collections::VecDeque;

use bytes::Bytes;
use futures_util::StreamExt;

use crate::storage::{ByteRange, ByteStream};

/// The framing of one multi-range answer.
#[derive(Debug, Clone)]
pub struct Multipart {
    boundary: String,
    /// Each part's header block and its length.
    parts: Vec<(Bytes, u64)>,
    end: Bytes,
}

impl Multipart {
    /// Frame `ranges` of an object of `size` bytes and type `content_type`.
    pub fn new(ranges: &[ByteRange], size: u64, content_type: &str) -> Multipart {
        let mut random = [0u8; 12];
        // A fixed boundary is still correct framing (the parts' lengths are
        // known); randomness only keeps it out of the bytes it separates.
        let _ = getrandom::fill(&mut random);
        let boundary = format!("tollgate-{}", hex::encode(random));
        Self::with_boundary(ranges, size, content_type, boundary)
    }

    fn with_boundary(ranges: &[ByteRange], size: u64, content_type: &str, boundary: String) -> Multipart {
        let parts = ranges
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let head = format!(
                    "{}--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: bytes {}-{}/{size}\r\n\r\n",
                    if i == 0 { "" } else { "\r\n" },
                    r.start,
                    r.last()
                );
                (Bytes::from(head), r.len)
            })
            .collect();
        let end = Bytes::from(format!("\r\n--{boundary}--\r\n"));
        Multipart { boundary, parts, end }
    }

    /// The response's `Content-Type`.
    pub fn content_type(&self) -> String {
        format!("multipart/byteranges; boundary={}", self.boundary)
    }

    /// The body's length, framing included.
    pub fn content_length(&self) -> u64 {
        self.parts.iter().map(|(h, len)| h.len() as u64 + len).sum::<u64>() + self.end.len() as u64
    }

    /// The body: `data` (the ranges' bytes, one after the other) with each
    /// part's header before its bytes and the closing delimiter after the
    /// last. An error from `data` passes through (the response is cut).
    pub fn frame(self, data: ByteStream) -> ByteStream {
        let state =
            Framing { data, parts: self.parts.into(), header_sent: false, held: Bytes::new(), end: Some(self.end) };
        Box::pin(futures_util::stream::unfold(state, |mut s| async move {
            let item = s.next().await?;
            Some((item, s))
        }))
    }
}

struct Framing {
    data: ByteStream,
    /// The parts not yet finished: header, bytes still to come.
    parts: VecDeque<(Bytes, u64)>,
    header_sent: bool,
    /// Bytes read from `data` beyond the current part's end.
    held: Bytes,
    end: Option<Bytes>,
}

impl Framing {
    async fn next(&mut self) -> Option<Result<Bytes, crate::storage::StorageError>> {
        loop {
            let Some((head, remaining)) = self.parts.front_mut() else {
                return self.end.take().map(Ok);
            };
            if !self.header_sent {
                self.header_sent = true;
                return Some(Ok(head.clone()));
            }
            if *remaining == 0 {
                self.parts.pop_front();
                self.header_sent = false;
                continue;
            }
            if self.held.is_empty() {
                match self.data.next().await {
                    Some(Ok(chunk)) => self.held = chunk,
                    Some(Err(e)) => return Some(Err(e)),
                    // Delivery's guard has already failed a short stream.
                    None => return None,
                }
            }
            let take = usize::try_from(*remaining).unwrap_or(usize::MAX).min(self.held.len());
            *remaining -= take as u64;
            return Some(Ok(self.held.split_to(take)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(m: Multipart, chunks: Vec<&'static [u8]>) -> Vec<u8> {
        let data: ByteStream =
            Box::pin(futures_util::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from_static(c)))));
        let mut out = Vec::new();
        let mut s = m.frame(data);
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn parts_are_framed_whatever_the_chunking() {
        let ranges = [ByteRange { start: 0, len: 3 }, ByteRange { start: 10, len: 2 }];
        let want = "--b\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-2/20\r\n\r\nabc\
                    \r\n--b\r\nContent-Type: text/plain\r\nContent-Range: bytes 10-11/20\r\n\r\nkl\r\n--b--\r\n";
        for chunks in [vec![&b"abckl"[..]], vec![b"a", b"bck", b"l"], vec![b"ab", b"c", b"k", b"l"]] {
            let m = Multipart::with_boundary(&ranges, 20, "text/plain", "b".into());
            assert_eq!(m.content_length(), want.len() as u64);
            assert_eq!(String::from_utf8(body(m, chunks).await).unwrap(), want);
        }
    }

    #[tokio::test]
    async fn a_storage_error_cuts_the_body() {
        let m = Multipart::with_boundary(
            &[ByteRange { start: 0, len: 3 }, ByteRange { start: 5, len: 1 }],
            9,
            "x/y",
            "b".into(),
        );
        let data: ByteStream = Box::pin(futures_util::stream::iter(vec![
            Ok(Bytes::from_static(b"ab")),
            Err(crate::storage::StorageError::Changed),
        ]));
        let mut s = m.frame(data);
        let mut errors = 0;
        while let Some(item) = s.next().await {
            errors += usize::from(item.is_err());
        }
        assert_eq!(errors, 1);
    }
}
