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

/// Several ranges of one object as one stream, the ranges' bytes one after
/// the other: the first read is opened now (so a storage failure is still
/// an HTTP error), each next one when the one before has ended.
pub async fn get_ranges(
    storage: std::sync::Arc<dyn super::BlobStore>,
    key: super::ObjectKey,
    ranges: Vec<super::ByteRange>,
    meta: super::ObjectMeta,
) -> Result<ByteStream, StorageError> {
    let mut rest = ranges.into_iter();
    let Some(first) = rest.next() else {
        return Ok(Box::pin(futures_util::stream::empty()));
    };
    let first = storage.get(&key, Some(first), &meta).await?;
    let rest = futures_util::stream::iter(rest).then(move |r| {
        let (storage, key, meta) = (storage.clone(), key.clone(), meta.clone());
        async move {
            match storage.get(&key, Some(r), &meta).await {
                Ok(s) => s,
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
}
