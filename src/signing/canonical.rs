//! The byte-exact pieces of the native token format: path canonicalisation, the
//! query-string fields, and the canonical string that the HMAC covers.
//!
//! `docs/signed-urls.md` is the normative description; the unit tests below and
//! `tests/signed_url_vectors.rs` keep this file and that page in agreement.

use std::borrow::Cow;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// First line of every canonical string; changes if the format ever does.
pub const FORMAT_TAG: &str = "TG1-HMAC-SHA256";

/// Bytes kept as they are in a canonical path segment: RFC 3986 "unreserved".
/// Everything else is percent-encoded with upper-case hex.
const SEGMENT_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Percent-encode one path segment the canonical way.
pub fn encode_segment(segment: &str) -> Cow<'_, str> {
    utf8_percent_encode(segment, SEGMENT_ENCODE).into()
}

/// Why a path cannot be canonicalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path must start with '/'")]
    NotAbsolute,
    #[error("the path has a '%' that is not followed by two hex digits")]
    BadEscape,
    #[error("the path does not decode to UTF-8")]
    NotUtf8,
    #[error("the path has a '.' or '..' segment")]
    DotSegment,
}

/// The canonical form of an absolute, percent-encoded request path: every segment
/// percent-decoded and encoded again with [`encode_segment`]. Clients that encode
/// `~` as `%7E`, or lower-case their hex, still match what the signer produced.
/// Borrows when the path is already canonical (the common case).
pub fn canonical_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if raw.bytes().all(is_plain_path_byte) {
        // SECURITY: one path, one spelling: a URL resolver (a browser, an
        // edge runtime) removes dot segments before a verifier sees them,
        // so a token must never name them.
        if has_dot_segment(raw) {
            return Err(PathError::DotSegment);
        }
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = String::with_capacity(raw.len() + 8);
    for (i, segment) in raw.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        let decoded = decode_segment(segment)?;
        if decoded == "." || decoded == ".." {
            return Err(PathError::DotSegment);
        }
        out.push_str(&encode_segment(&decoded));
    }
    Ok(Cow::Owned(out))
}

/// Does the path hold a `.` or `..` segment, as written (encoded ones are
/// found when decoding)?
fn has_dot_segment(raw: &str) -> bool {
    raw.split('/').any(|s| s == "." || s == "..")
}

/// Percent-decode one segment strictly: bad escapes and non-UTF-8 are errors.
pub fn decode_segment(segment: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = segment.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let ok = bytes.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
            if !ok {
                return Err(PathError::BadEscape);
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    percent_encoding::percent_decode_str(segment).decode_utf8().map_err(|_| PathError::NotUtf8)
}

/// Bytes that need no decoding and are canonical as they stand.
fn is_plain_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/')
}

/// Is `s` a valid identifier field (`kid`, `cid`, `gid`): 1 to 128 bytes of
/// `A-Z a-z 0-9 . _ -`. The charset needs no escaping in a query string or a
/// canonical string, which is what keeps both unambiguous.
pub fn is_valid_id(s: &str) -> bool {
    (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The fields of a token as they appear in the query string, unparsed beyond
/// their charsets. The canonical string is built from these exact bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawToken<'a> {
    pub exp: &'a str,
    pub nbf: Option<&'a str>,
    pub cid: Option<&'a str>,
    pub gid: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub pfx: Option<&'a str>,
    pub kid: &'a str,
    pub sig: &'a str,
}

impl<'a> RawToken<'a> {
    /// Pick the token's fields out of a query string. Values are taken verbatim:
    /// every field's charset is one that needs no percent-encoding. Parameters
    /// Tollgate does not know are ignored (CDNs and trackers add their own).
    pub fn from_query(query: &'a str) -> Result<Self, &'static str> {
        let mut exp = None;
        let mut kid = None;
        let mut sig = None;
        let mut t = RawToken::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match name {
                "exp" => &mut exp,
                "kid" => &mut kid,
                "sig" => &mut sig,
                "nbf" => &mut t.nbf,
                "cid" => &mut t.cid,
                "gid" => &mut t.gid,
                "ip" => &mut t.ip,
                "pfx" => &mut t.pfx,
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err("a token parameter appears twice");
            }
        }
        t.exp = exp.ok_or("the URL has no 'exp' parameter")?;
        t.kid = kid.ok_or("the URL has no 'kid' parameter")?;
        t.sig = sig.ok_or("the URL has no 'sig' parameter")?;
        t.check_charsets()?;
        Ok(t)
    }

    fn check_charsets(&self) -> Result<(), &'static str> {
        if !is_timestamp(self.exp) {
            return Err("'exp' is not a Unix timestamp");
        }
        if self.nbf.is_some_and(|v| !is_timestamp(v)) {
            return Err("'nbf' is not a Unix timestamp");
        }
        if !is_valid_id(self.kid) {
            return Err("'kid' is not a valid key id");
        }
        if self.cid.is_some_and(|v| !is_valid_id(v)) {
            return Err("'cid' is not a valid customer id");
        }
        if self.gid.is_some_and(|v| !is_valid_id(v)) {
            return Err("'gid' is not a valid grant id");
        }
        if !is_signature(self.sig) {
            return Err("'sig' is not 43 characters of unpadded base64url");
        }
        if self.ip.is_some_and(|v| network(v).is_none()) {
            return Err("'ip' is not a network in canonical CIDR form");
        }
        if let Some(pfx) = self.pfx {
            let canonical = canonical_path(pfx).map_err(|_| "'pfx' is not a path")?;
            if canonical != pfx || !pfx.ends_with('/') {
                return Err("'pfx' must be a canonical path ending in '/'");
            }
        }
        Ok(())
    }

    /// Feed the canonical string to `sink`, piece by piece, without allocating.
    /// `path` is the canonical request path; it is used for exact-path tokens,
    /// `pfx` for prefix tokens.
    pub fn write_canonical(&self, path: &str, mut sink: impl FnMut(&[u8])) {
        let lines: [&str; 7] = [
            FORMAT_TAG,
            self.kid,
            self.exp,
            self.nbf.unwrap_or(""),
            self.cid.unwrap_or(""),
            self.gid.unwrap_or(""),
            self.ip.unwrap_or(""),
        ];
        for line in lines {
            sink(line.as_bytes());
            sink(b"\n");
        }
        match self.pfx {
            Some(prefix) => {
                sink(b"prefix:");
                sink(prefix.as_bytes());
            }
            None => {
                sink(b"path:");
                sink(path.as_bytes());
            }
        }
    }

    /// The canonical string as text; for documentation, tests and `tollgate verify`.
    pub fn canonical_string(&self, path: &str) -> String {
        let mut out = Vec::with_capacity(96 + path.len());
        self.write_canonical(path, |b| out.extend_from_slice(b));
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The query string that carries this token, fields in canonical order.
    pub fn to_query(&self) -> String {
        let mut q = String::with_capacity(160);
        let mut push = |name: &str, value: &str| {
            if !q.is_empty() {
                q.push('&');
            }
            q.push_str(name);
            q.push('=');
            q.push_str(value);
        };
        push("exp", self.exp);
        let optional = [("nbf", self.nbf), ("cid", self.cid), ("gid", self.gid), ("ip", self.ip), ("pfx", self.pfx)];
        for (name, value) in optional {
            if let Some(v) = value {
                push(name, v);
            }
        }
        push("kid", self.kid);
        push("sig", self.sig);
        q
    }
}

/// A signature as written: the 32-byte HMAC in unpadded base64url, which is
/// 43 characters whose last one carries 4 bits (so its low 2 bits are zero:
/// one MAC, one spelling).
fn is_signature(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 43
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_'))
        && b"AEIMQUYcgkosw048".contains(&b[42])
}

/// The network an `ip` field names, if it is written in its one canonical
/// form: an address and a prefix length, host bits zero, as Rust and RFC 5952
/// print it (lower-case, longest run of zero groups as `::`, dotted IPv4 with
/// no leading zeros, no leading zero in the length), and not an IPv4-mapped
/// IPv6 network (write the IPv4 one; mapped clients are compared as IPv4).
pub fn network(s: &str) -> Option<ipnet::IpNet> {
    let net: ipnet::IpNet = s.parse().ok()?;
    let mapped = matches!(net, ipnet::IpNet::V6(n) if n.addr().to_ipv4_mapped().is_some());
    (net == net.trunc() && net.to_string() == s && !mapped).then_some(net)
}

fn is_timestamp(s: &str) -> bool {
    (1..=19).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A signature-shaped value.
    const SIG: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    #[test]
    fn canonical_path_borrows_plain_paths() {
        let p = canonical_path("/d/app/1.2.3/app-1.2.3.tar.gz").unwrap();
        assert!(matches!(p, Cow::Borrowed(_)));
    }

    #[test]
    fn canonical_path_normalises_escapes() {
        assert_eq!(canonical_path("/d/a/%7e/x%2a").unwrap(), "/d/a/~/x%2A");
        assert_eq!(canonical_path("/d/caf%C3%A9 b").unwrap(), "/d/caf%C3%A9%20b");
        assert_eq!(canonical_path("/d/a b+c").unwrap(), "/d/a%20b%2Bc");
        assert_eq!(canonical_path("/d/a%2Fb").unwrap(), "/d/a%2Fb");
    }

    #[test]
    fn canonical_path_rejects_garbage() {
        assert_eq!(canonical_path("d/a"), Err(PathError::NotAbsolute));
        assert_eq!(canonical_path("/d/%zz"), Err(PathError::BadEscape));
        assert_eq!(canonical_path("/d/%4"), Err(PathError::BadEscape));
        assert_eq!(canonical_path("/d/%ff"), Err(PathError::NotUtf8));
        for dots in ["/d/../x", "/d/./x", "/d/%2e%2E/x", "/d/%2E/x", "/d/a/..", "/d/a b/../x"] {
            assert_eq!(canonical_path(dots), Err(PathError::DotSegment), "{dots}");
        }
        assert_eq!(canonical_path("/d/.../x").unwrap(), "/d/.../x");
    }

    #[test]
    fn networks_have_one_spelling() {
        for ok in ["10.0.0.0/8", "203.0.113.7/32", "0.0.0.0/0", "2001:db8::/32", "::1/128", "::/0", "::102:300/120"] {
            assert!(network(ok).is_some(), "{ok}");
        }
        for bad in [
            "",
            "10.0.0.0",
            "10.0.0.1/8",
            "1.2.3.4/99",
            "1.2.3.4/",
            "1.2.3.4/024",
            "010.0.0.0/8",
            "2001:DB8::/32",
            "2001:0db8::/32",
            "2001:db8:0:0:0:0:0:0/32",
            "::ffff:1.2.3.0/120",
            "::ffff:102:300/120",
            "1.2.3.4/32 ",
        ] {
            assert!(network(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn query_parsing_requires_fields_and_rejects_duplicates() {
        let q = |s: &str| RawToken::from_query(&s.replace("SIG", SIG)).map(|_| ());
        assert!(q("kid=k1&sig=SIG").is_err());
        assert!(q("exp=1&sig=SIG").is_err());
        assert!(q("exp=1&kid=k1").is_err());
        assert!(q("exp=1&exp=2&kid=k1&sig=SIG").is_err());
        assert!(q("exp=-1&kid=k1&sig=SIG").is_err());
        assert!(q("exp=1&kid=k%201&sig=SIG").is_err());
        assert!(q("exp=1&kid=k1&sig=SIG&pfx=/d/a").is_err());
        assert!(q("exp=1&kid=k1&sig=SIG&pfx=/d/%7e/").is_err());
        assert!(q("exp=1&kid=k1&sig=SIG&cid=").is_err());
        assert!(q("exp=1&kid=k1&sig=SIG&ip=").is_err());
        assert!(q("exp=1&kid=k1&sig=SIG&ip=1.2.3.4/99").is_err());
        // The signature: 43 base64url characters, the last with zero low bits.
        assert!(q("exp=1&kid=k1&sig=SIG=").is_err());
        assert!(q("exp=1&kid=k1&sig=abc").is_err());
        assert!(q(&format!("exp=1&kid=k1&sig={}B", &SIG[..42])).is_err());
        assert!(q(&format!("exp=1&kid=k1&sig={}+", &SIG[..42])).is_err());
        assert!(q("exp=1&kid=k1&sig=SIG").is_ok());
        let query = format!("utm=1&exp=10&kid=k1&sig={SIG}&ip=10.0.0.0/8&pfx=/d/a/");
        let t = RawToken::from_query(&query).unwrap();
        assert_eq!(t.exp, "10");
        assert_eq!(t.ip, Some("10.0.0.0/8"));
        assert_eq!(t.pfx, Some("/d/a/"));
    }

    #[test]
    fn query_round_trips() {
        let t = RawToken {
            exp: "20",
            nbf: Some("10"),
            cid: Some("acme"),
            gid: None,
            ip: Some("::1/128"),
            pfx: None,
            kid: "k1",
            sig: SIG,
        };
        let q = t.to_query();
        assert_eq!(q, format!("exp=20&nbf=10&cid=acme&ip=::1/128&kid=k1&sig={SIG}"));
        assert_eq!(RawToken::from_query(&q).unwrap(), t);
    }

    #[test]
    fn canonical_string_layout() {
        let t = RawToken { exp: "20", kid: "k1", sig: "", ..Default::default() };
        assert_eq!(t.canonical_string("/d/a"), "TG1-HMAC-SHA256\nk1\n20\n\n\n\n\npath:/d/a");
        let t = RawToken { pfx: Some("/d/"), ..t };
        assert_eq!(t.canonical_string("/d/a"), "TG1-HMAC-SHA256\nk1\n20\n\n\n\n\nprefix:/d/");
    }
}
