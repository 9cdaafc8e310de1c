//! HTTP validators and ranges (RFC 9110 §13 and §14) for object responses.

use std::time::SystemTime;

use axum::http::{HeaderMap, Method, header};

use crate::storage::{ByteRange, ObjectMeta};

/// Outcome of the precondition headers, evaluated in RFC 9110 §13.2.2 order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    Proceed,
    /// `304 Not Modified`.
    NotModified,
    /// `412 Precondition Failed`.
    Failed,
}

pub fn evaluate_preconditions(headers: &HeaderMap, method: &Method, meta: &ObjectMeta) -> Precondition {
    let safe = method == Method::GET || method == Method::HEAD;
    if let Some(v) = text(headers, header::IF_MATCH) {
        if !etag_list_matches(v, &meta.etag, true) {
            return Precondition::Failed;
        }
    } else if let Some(date) = date(headers, header::IF_UNMODIFIED_SINCE)
        && meta.last_modified > date
    {
        return Precondition::Failed;
    }
    if let Some(v) = text(headers, header::IF_NONE_MATCH) {
        if etag_list_matches(v, &meta.etag, false) {
            return if safe { Precondition::NotModified } else { Precondition::Failed };
        }
    } else if safe
        && let Some(date) = date(headers, header::IF_MODIFIED_SINCE)
        && meta.last_modified <= date
    {
        return Precondition::NotModified;
    }
    Precondition::Proceed
}

/// What to send for the `Range` header (with `If-Range` considered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeDecision {
    /// `200` with the whole object: no range, an ignored range, or a failed
    /// `If-Range`.
    Full,
    /// `206` with this range.
    Partial(ByteRange),
    /// `206` `multipart/byteranges` with these ranges, in this order (two
    /// or more, ascending, none overlapping).
    Multi(Vec<ByteRange>),
    /// `416`.
    Unsatisfiable,
}

/// The most ranges one request is served (read from storage in at most
/// `storage::MAX_RANGE_READS` spans): electron-updater's differential
/// downloads ask for up to 1000 at a time.
pub const MAX_RANGES: usize = 1000;

pub fn evaluate_range(headers: &HeaderMap, method: &Method, meta: &ObjectMeta) -> RangeDecision {
    if method != Method::GET && method != Method::HEAD {
        return RangeDecision::Full;
    }
    let Some(spec) = text(headers, header::RANGE) else {
        return RangeDecision::Full;
    };
    if let Some(cond) = text(headers, header::IF_RANGE)
        && !if_range_holds(cond, meta)
    {
        return RangeDecision::Full;
    }
    parse_range(spec, meta.size)
}

/// Parse a `bytes=` range set against an object of `size` bytes (RFC 9110
/// §14.1.2, §14.2). Unsatisfiable members are dropped; none left is `416`.
/// Several satisfiable ones are served as `multipart/byteranges` when they
/// ascend without overlapping and number at most [`MAX_RANGES`]; any other
/// set — overlapping, descending, too many: what §14.2 calls the signs of a
/// broken client or a denial-of-service attack — is ignored (`200`, the
/// whole object), as is a set with any malformed member.
pub fn parse_range(spec: &str, size: u64) -> RangeDecision {
    // The range unit is case-insensitive (RFC 9110 §14.1).
    let spec = spec.trim();
    let Some(set) = spec.get(..6).filter(|unit| unit.eq_ignore_ascii_case("bytes=")).map(|_| &spec[6..]) else {
        return RangeDecision::Full;
    };
    let mut satisfiable = Vec::new();
    let mut members = 0usize;
    // A list's empty members are not members (RFC 9110 §5.6.1).
    for member in set.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        members += 1;
        if members > MAX_RANGES {
            return RangeDecision::Full;
        }
        match parse_member(member, size) {
            Member::Malformed => return RangeDecision::Full,
            Member::Unsatisfiable => {}
            Member::Range(r) => satisfiable.push(r),
        }
    }
    if members == 0 {
        return RangeDecision::Full;
    }
    match satisfiable.len() {
        0 => RangeDecision::Unsatisfiable,
        1 => RangeDecision::Partial(satisfiable[0]),
        _ if satisfiable.windows(2).all(|w| w[0].last() < w[1].start) => RangeDecision::Multi(satisfiable),
        _ => RangeDecision::Full,
    }
}

enum Member {
    Range(ByteRange),
    Unsatisfiable,
    Malformed,
}

fn parse_member(member: &str, size: u64) -> Member {
    let Some((first, last)) = member.split_once('-') else {
        return Member::Malformed;
    };
    let (first, last) = (first.trim(), last.trim());
    let number = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            None
        } else {
            // Absurdly large numbers saturate: still a syntactically valid range.
            Some(s.parse().unwrap_or(u64::MAX))
        }
    };
    match (number(first), number(last)) {
        (Some(start), Some(end)) if start <= end => {
            if start >= size {
                Member::Unsatisfiable
            } else {
                let end = end.min(size - 1);
                Member::Range(ByteRange { start, len: end - start + 1 })
            }
        }
        (Some(start), None) if last.is_empty() => {
            if start >= size {
                Member::Unsatisfiable
            } else {
                Member::Range(ByteRange { start, len: size - start })
            }
        }
        (None, Some(suffix)) if first.is_empty() => {
            if suffix == 0 || size == 0 {
                Member::Unsatisfiable
            } else {
                let len = suffix.min(size);
                Member::Range(ByteRange { start: size - len, len })
            }
        }
        _ => Member::Malformed,
    }
}

/// `If-Range` holds when its entity tag matches strongly, or its date equals
/// `Last-Modified` exactly.
fn if_range_holds(cond: &str, meta: &ObjectMeta) -> bool {
    let cond = cond.trim();
    if cond.starts_with('"') {
        return cond == meta.etag;
    }
    if cond.starts_with("W/") {
        return false;
    }
    httpdate::parse_http_date(cond).is_ok_and(|d| d == meta.last_modified)
}

/// Does a comma-separated entity-tag list (or `*`) match `etag`? Strong
/// comparison refuses weak tags; weak comparison ignores the `W/` prefix.
fn etag_list_matches(list: &str, etag: &str, strong: bool) -> bool {
    if list.trim() == "*" {
        return true;
    }
    let ours = etag.trim_start_matches("W/");
    list.split(',').map(str::trim).any(|tag| {
        if let Some(weak) = tag.strip_prefix("W/") {
            !strong && weak == ours
        } else {
            tag == ours && !(strong && etag.starts_with("W/"))
        }
    })
}

fn text(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn date(headers: &HeaderMap, name: header::HeaderName) -> Option<SystemTime> {
    text(headers, name).and_then(|v| httpdate::parse_http_date(v).ok())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use axum::http::HeaderValue;

    use super::*;

    fn meta() -> ObjectMeta {
        ObjectMeta {
            size: 1000,
            last_modified: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            etag: "\"abc\"".into(),
            content_type: None,
        }
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn range(start: u64, len: u64) -> RangeDecision {
        RangeDecision::Partial(ByteRange { start, len })
    }

    #[test]
    fn range_table() {
        let cases = [
            ("bytes=0-99", range(0, 100)),
            ("bytes=990-", range(990, 10)),
            ("bytes=999-999", range(999, 1)),
            ("bytes=900-5000", range(900, 100)),
            ("bytes=-10", range(990, 10)),
            ("bytes=-5000", range(0, 1000)),
            ("bytes=1000-", RangeDecision::Unsatisfiable),
            ("bytes=1000-1001", RangeDecision::Unsatisfiable),
            ("bytes=-0", RangeDecision::Unsatisfiable),
            ("bytes=99999999999999999999999-", RangeDecision::Unsatisfiable),
            ("bytes=5-3", RangeDecision::Full),
            (
                "bytes=0-1,5-6",
                RangeDecision::Multi(vec![ByteRange { start: 0, len: 2 }, ByteRange { start: 5, len: 2 }]),
            ),
            (
                "bytes=0-1, ,5-6,",
                RangeDecision::Multi(vec![ByteRange { start: 0, len: 2 }, ByteRange { start: 5, len: 2 }]),
            ),
            (
                "bytes=0-1,2-3",
                RangeDecision::Multi(vec![ByteRange { start: 0, len: 2 }, ByteRange { start: 2, len: 2 }]),
            ),
            ("bytes=990-, 0-1", RangeDecision::Full),
            ("bytes=0-5,3-9", RangeDecision::Full),
            ("bytes=0-1,x", RangeDecision::Full),
            ("bytes=0-1,2000-3000", range(0, 2)),
            ("bytes=1000-,2000-3000", RangeDecision::Unsatisfiable),
            ("bytes=,", RangeDecision::Full),
            ("bytes=abc", RangeDecision::Full),
            ("bytes=", RangeDecision::Full),
            ("items=0-1", RangeDecision::Full),
            ("bytes=-", RangeDecision::Full),
            ("bytes=+1-2", RangeDecision::Full),
            ("BYTES=0-5", range(0, 6)),
            ("Bytes=-10", range(990, 10)),
            ("bytés=0-5", RangeDecision::Full),
        ];
        for (spec, want) in cases {
            assert_eq!(parse_range(spec, 1000), want, "{spec}");
        }
        assert_eq!(parse_range("bytes=0-", 0), RangeDecision::Unsatisfiable);
        assert_eq!(parse_range("bytes=-1", 0), RangeDecision::Unsatisfiable);
    }

    #[test]
    fn if_range_gates_the_range() {
        let m = meta();
        let date = httpdate::fmt_http_date(m.last_modified);
        let later = httpdate::fmt_http_date(m.last_modified + Duration::from_secs(1));
        let cases = [
            ("\"abc\"", range(0, 10)),
            ("\"other\"", RangeDecision::Full),
            ("W/\"abc\"", RangeDecision::Full),
            (date.as_str(), range(0, 10)),
            (later.as_str(), RangeDecision::Full),
            ("garbage", RangeDecision::Full),
        ];
        for (cond, want) in cases {
            let h = headers(&[(header::RANGE, "bytes=0-9"), (header::IF_RANGE, cond)]);
            assert_eq!(evaluate_range(&h, &Method::GET, &m), want, "{cond}");
        }
    }

    #[test]
    fn preconditions_table() {
        let m = meta();
        let at = httpdate::fmt_http_date(m.last_modified);
        let before = httpdate::fmt_http_date(m.last_modified - Duration::from_secs(1));
        use Precondition::*;
        let cases: &[(&[(header::HeaderName, &str)], Precondition)] = &[
            (&[], Proceed),
            (&[(header::IF_NONE_MATCH, "\"abc\"")], NotModified),
            (&[(header::IF_NONE_MATCH, "W/\"abc\"")], NotModified),
            (&[(header::IF_NONE_MATCH, "\"x\", \"abc\"")], NotModified),
            (&[(header::IF_NONE_MATCH, "*")], NotModified),
            (&[(header::IF_NONE_MATCH, "\"x\"")], Proceed),
            (&[(header::IF_MODIFIED_SINCE, &at)], NotModified),
            (&[(header::IF_MODIFIED_SINCE, &before)], Proceed),
            // If-None-Match takes precedence over If-Modified-Since.
            (&[(header::IF_NONE_MATCH, "\"x\""), (header::IF_MODIFIED_SINCE, &at)], Proceed),
            (&[(header::IF_MATCH, "\"abc\"")], Proceed),
            (&[(header::IF_MATCH, "W/\"abc\"")], Failed),
            (&[(header::IF_MATCH, "\"x\"")], Failed),
            (&[(header::IF_UNMODIFIED_SINCE, &before)], Failed),
            (&[(header::IF_UNMODIFIED_SINCE, &at)], Proceed),
            (&[(header::IF_MODIFIED_SINCE, "not a date")], Proceed),
        ];
        for (h, want) in cases {
            assert_eq!(evaluate_preconditions(&headers(h), &Method::GET, &m), *want, "{h:?}");
        }
    }

    mod properties {
        use axum::http::{HeaderMap, HeaderValue, Method, header};
        use proptest::prelude::*;

        use super::*;

        fn meta(size: u64) -> ObjectMeta {
            ObjectMeta {
                size,
                last_modified: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
                etag: "\"abc\"".into(),
                content_type: None,
            }
        }

        proptest! {
            /// A range the parser accepts lies inside the object, whatever
            /// the header says.
            #[test]
            fn accepted_ranges_lie_inside_the_object(spec in ".{0,40}", digits in "bytes=[0-9]{0,21}-[0-9]{0,21}", many in "bytes=([0-9]{0,5}-[0-9]{0,5}, ?){1,6}", size in 0u64..5000) {
                for s in [&spec, &digits, &many] {
                    let ranges = match parse_range(s, size) {
                        RangeDecision::Partial(r) => vec![r],
                        RangeDecision::Multi(rs) => {
                            prop_assert!(rs.len() >= 2 && rs.len() <= MAX_RANGES);
                            prop_assert!(rs.windows(2).all(|w| w[0].last() < w[1].start), "{} {:?}", s, rs);
                            rs
                        }
                        _ => vec![],
                    };
                    for r in ranges {
                        prop_assert!(r.len >= 1 && r.start < size && r.start + r.len <= size, "{} {:?} {}", s, r, size);
                    }
                }
            }

            /// Validators and ranges from any header values decide without
            /// panicking.
            #[test]
            fn any_validator_headers_decide(values in proptest::collection::vec("[ -~]{0,60}", 6), size in 0u64..100) {
                let mut h = HeaderMap::new();
                let names = [header::IF_MATCH, header::IF_NONE_MATCH, header::IF_MODIFIED_SINCE, header::IF_UNMODIFIED_SINCE, header::IF_RANGE, header::RANGE];
                for (name, v) in names.into_iter().zip(&values) {
                    if let Ok(v) = HeaderValue::from_str(v) {
                        h.insert(name, v);
                    }
                }
                for m in [Method::GET, Method::HEAD] {
                    let _ = evaluate_preconditions(&h, &m, &meta(size));
                    if let RangeDecision::Partial(r) = evaluate_range(&h, &m, &meta(size)) {
                        prop_assert!(r.start + r.len <= size);
                    }
                }
            }
        }
    }
}
