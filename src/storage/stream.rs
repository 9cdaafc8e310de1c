//! The adapter every object stream passes through on its way to a client.

use std::time::Duration;

use futures_util::StreamExt;
use tracing::Instrument;

use super::{ByteStream, StorageError};

/// Told how a guarded stream ended, when it is dropped.
pub trait StreamEnd: Send + 'static {
    /// `sent` bytes went out; `complete` when that is all of them and the
    /// stream ended without an error.
    fn end(&mut self, sent: u64, complete: bool);
}

impl StreamEnd for () {
    fn end(&mut self, _sent: u64, _complete: bool) {}
}

struct State<G: StreamEnd> {
    inner: ByteStream,
    expected: u64,
    sent: u64,
    idle: Duration,
    done: bool,
    failed: bool,
    span: tracing::Span,
    guard: G,
}

impl<G: StreamEnd> Drop for State<G> {
    fn drop(&mut self) {
        self.guard.end(self.sent, !self.failed && self.sent == self.expected);
    }
}

/// Wrap an object stream so that it delivers exactly `expected` bytes or fails:
/// a stall longer than `idle` between chunks, a storage error, an early end or
/// an overlong object all become an `Err` item, which makes the HTTP layer cut
/// the response instead of ending it as if complete. `guard` lives as long as
/// the stream, so dropping the stream (client gone) releases it, and the storage
/// read is cancelled with it; it learns how many bytes went out.
pub fn guarded<G: StreamEnd>(inner: ByteStream, expected: u64, idle: Duration, guard: G) -> ByteStream {
    let state =
        State { inner, expected, sent: 0, idle, done: false, failed: false, span: tracing::Span::current(), guard };
    Box::pin(futures_util::stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        let span = s.span.clone();
        let item = next_chunk(&mut s).instrument(span).await;
        match item {
            Some(Err(e)) => {
                s.done = true;
                s.failed = true;
                tracing::warn!(parent: &s.span, error = %e, sent = s.sent, expected = s.expected, "object stream failed; cutting the response");
                Some((Err(e), s))
            }
            Some(Ok(chunk)) => Some((Ok(chunk), s)),
            None => None,
        }
    }))
}

async fn next_chunk<G: StreamEnd>(s: &mut State<G>) -> Option<Result<bytes::Bytes, StorageError>> {
    loop {
        let next = match tokio::time::timeout(s.idle, s.inner.next()).await {
            Ok(next) => next,
            Err(_) => return Some(Err(StorageError::Timeout("no data from storage within the idle timeout"))),
        };
        return match next {
            Some(Ok(chunk)) if chunk.is_empty() => continue,
            Some(Ok(chunk)) => {
                let len = chunk.len() as u64;
                if s.sent + len > s.expected {
                    return Some(Err(StorageError::Upstream("object is longer than its metadata says".into())));
                }
                s.sent += len;
                Some(Ok(chunk))
            }
            Some(Err(e)) => Some(Err(e)),
            None if s.sent == s.expected => None,
            None => Some(Err(StorageError::Truncated { sent: s.sent, expected: s.expected })),
        };
    }
}

/// The most storage reads one multi-range answer makes: ranges are read
/// in at most this many spans, the ones with the smallest gaps between them
/// together, and the bytes of the gaps dropped. However many ranges a client
/// asks for, it costs storage this many requests at most.
pub const MAX_RANGE_READS: usize = 32;

/// One storage read and the ranges it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Span {
    start: u64,
    end: u64,
    members: Vec<super::ByteRange>,
}

/// `ranges` (ascending, not overlapping) grouped into at most `max` spans,
/// closing the smallest gaps first.
fn spans(ranges: &[super::ByteRange], max: usize) -> Vec<Span> {
    let mut spans: Vec<Span> =
        ranges.iter().map(|r| Span { start: r.start, end: r.start + r.len, members: vec![*r] }).collect();
    while spans.len() > max.max(1) {
        let Some(i) = (0..spans.len() - 1).min_by_key(|&i| spans[i + 1].start - spans[i].end) else { break };
        let next = spans.remove(i + 1);
        spans[i].end = next.end;
        spans[i].members.extend(next.members);
    }
    spans
}

/// Of a stream of the bytes from `start` on, only those inside `members`.
fn keep(inner: ByteStream, start: u64, members: Vec<super::ByteRange>) -> ByteStream {
    let mut pos = start;
    Box::pin(inner.flat_map(move |item| {
        let out: Vec<Result<bytes::Bytes, StorageError>> = match item {
            Err(e) => vec![Err(e)],
            Ok(chunk) => {
                let (from, to) = (pos, pos + chunk.len() as u64);
                pos = to;
                members
                    .iter()
                    .filter_map(|m| {
                        let (a, b) = (m.start.max(from), (m.start + m.len).min(to));
                        // Both within the chunk, whose length is a usize.
                        (a < b).then(|| Ok(chunk.slice((a - from) as usize..(b - from) as usize)))
                    })
                    .collect()
            }
        };
        futures_util::stream::iter(out)
    }))
}

/// Several ranges of one object as one stream, the ranges' bytes one after
/// the other, in at most [`MAX_RANGE_READS`] storage reads: the first is
/// opened now (so a storage failure is still an HTTP error), each next one
/// when the one before has ended.
pub async fn get_ranges(
    storage: std::sync::Arc<dyn super::BlobStore>,
    key: super::ObjectKey,
    ranges: Vec<super::ByteRange>,
    meta: super::ObjectMeta,
) -> Result<ByteStream, StorageError> {
    let mut rest = spans(&ranges, MAX_RANGE_READS).into_iter();
    let Some(first) = rest.next() else {
        return Ok(Box::pin(futures_util::stream::empty()));
    };
    let read = |span: &Span| super::ByteRange { start: span.start, len: span.end - span.start };
    let first = keep(storage.get(&key, Some(read(&first)), &meta).await?, first.start, first.members);
    let rest = futures_util::stream::iter(rest).then(move |span| {
        let (storage, key, meta) = (storage.clone(), key.clone(), meta.clone());
        async move {
            match storage.get(&key, Some(read(&span)), &meta).await {
                Ok(s) => keep(s, span.start, span.members),
                Err(e) => Box::pin(futures_util::stream::once(async move { Err(e) })) as ByteStream,
            }
        }
    });
    Ok(Box::pin(first.chain(rest.flatten())))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use bytes::Bytes;
    use futures_util::stream;

    use super::*;

    fn chunks(parts: Vec<Result<&'static str, StorageError>>) -> ByteStream {
        Box::pin(stream::iter(parts.into_iter().map(|p| p.map(|s| Bytes::from_static(s.as_bytes())))))
    }

    async fn collect(s: ByteStream) -> (String, Option<StorageError>) {
        let mut out = String::new();
        let mut s = s;
        while let Some(item) = s.next().await {
            match item {
                Ok(b) => out.push_str(std::str::from_utf8(&b).unwrap()),
                Err(e) => return (out, Some(e)),
            }
        }
        (out, None)
    }

    const IDLE: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn exact_length_passes() {
        let (body, err) = collect(guarded(chunks(vec![Ok("ab"), Ok(""), Ok("cd")]), 4, IDLE, ())).await;
        assert_eq!(body, "abcd");
        assert!(err.is_none());
    }

    #[tokio::test]
    async fn short_stream_fails_instead_of_ending() {
        let (body, err) = collect(guarded(chunks(vec![Ok("ab")]), 4, IDLE, ())).await;
        assert_eq!(body, "ab");
        assert!(matches!(err, Some(StorageError::Truncated { sent: 2, expected: 4 })));
    }

    #[tokio::test]
    async fn long_stream_and_errors_fail() {
        let (_, err) = collect(guarded(chunks(vec![Ok("abcde")]), 4, IDLE, ())).await;
        assert!(matches!(err, Some(StorageError::Upstream(_))));
        let (body, err) =
            collect(guarded(chunks(vec![Ok("a"), Err(StorageError::Timeout("x")), Ok("b")]), 2, IDLE, ())).await;
        assert_eq!(body, "a");
        assert!(matches!(err, Some(StorageError::Timeout(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn stall_between_chunks_fails() {
        let stalled: ByteStream = Box::pin(stream::iter([Ok(Bytes::from_static(b"a"))]).chain(stream::pending()));
        let (body, err) = collect(guarded(stalled, 2, IDLE, ())).await;
        assert_eq!(body, "a");
        assert!(matches!(err, Some(StorageError::Timeout(_))));
    }

    #[derive(Clone, Default)]
    struct Ends(Arc<std::sync::Mutex<Vec<(u64, bool)>>>);
    impl StreamEnd for Ends {
        fn end(&mut self, sent: u64, complete: bool) {
            self.0.lock().unwrap().push((sent, complete));
        }
    }

    #[tokio::test]
    async fn the_guard_learns_how_the_stream_ended() {
        let ends = Ends::default();
        collect(guarded(chunks(vec![Ok("ab"), Ok("cd")]), 4, IDLE, ends.clone())).await;
        collect(guarded(chunks(vec![Ok("ab")]), 4, IDLE, ends.clone())).await;
        let mut half = guarded(chunks(vec![Ok("ab"), Ok("cd")]), 4, IDLE, ends.clone());
        half.next().await;
        drop(half);
        assert_eq!(*ends.0.lock().unwrap(), vec![(4, true), (2, false), (2, false)]);
    }

    #[tokio::test]
    async fn dropping_the_stream_releases_the_guard() {
        struct Flag(Arc<AtomicBool>);
        impl StreamEnd for Flag {
            fn end(&mut self, _sent: u64, _complete: bool) {}
        }
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(AtomicBool::new(false));
        let s = guarded(chunks(vec![Ok("ab")]), 2, IDLE, Flag(dropped.clone()));
        assert!(!dropped.load(Ordering::SeqCst));
        drop(s);
        assert!(dropped.load(Ordering::SeqCst));
    }

    #[test]
    fn ranges_are_read_in_few_spans_closing_the_smallest_gaps() {
        let r = |start, len| crate::storage::ByteRange { start, len };
        let ranges = [r(0, 10), r(12, 3), r(100, 5), r(1000, 1), r(1003, 2)];
        let got: Vec<(u64, u64, usize)> = spans(&ranges, 3).iter().map(|s| (s.start, s.end, s.members.len())).collect();
        assert_eq!(got, [(0, 15, 2), (100, 105, 1), (1000, 1005, 2)]);
        assert_eq!(spans(&ranges, 1).len(), 1);
        assert_eq!(spans(&ranges, 10).len(), 5, "no more reads than ranges");
        let many: Vec<_> = (0..1000).map(|i| r(i * 10, 1)).collect();
        assert_eq!(spans(&many, MAX_RANGE_READS).len(), MAX_RANGE_READS);
    }

    #[tokio::test]
    async fn a_span_keeps_only_its_ranges_bytes_whatever_the_chunking() {
        let r = |start, len| crate::storage::ByteRange { start, len };
        let data: Vec<u8> = (0u8..=99).collect();
        for chunk in [1usize, 3, 7, 100] {
            let pieces: Vec<Result<Bytes, StorageError>> =
                data[10..60].chunks(chunk).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
            let kept = keep(Box::pin(stream::iter(pieces)), 10, vec![r(10, 2), r(20, 5), r(58, 2)]);
            let out: Vec<u8> = kept.map(|c| c.unwrap().to_vec()).concat().await;
            assert_eq!(out, [&data[10..12], &data[20..25], &data[58..60]].concat(), "chunks of {chunk}");
        }
    }
}
