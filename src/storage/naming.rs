//! What a stored file is called and typed as when it is downloaded: the
//! `Content-Disposition` and `Content-Type` of the gateway's own answers
//! and of the presigned URLs storage serves in `redirect` delivery.

use super::ObjectMeta;

/// `Content-Disposition: attachment` with an ASCII `filename` and, for names that
/// are not plain ASCII, an RFC 6266 / RFC 8187 `filename*`.
pub fn content_disposition(filename: &str) -> String {
    let fallback: String = filename
        .chars()
        .map(|c| if (c.is_ascii_graphic() || c == ' ') && c != '"' && c != '\\' { c } else { '_' })
        .collect();
    if fallback == filename {
        return format!("attachment; filename=\"{fallback}\"");
    }
    let encoded = percent_encoding::utf8_percent_encode(filename, ATTR_CHAR_ENCODE);
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// RFC 8187 `attr-char` is kept; everything else is percent-encoded.
const ATTR_CHAR_ENCODE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// The type registered with the artifact, if any; else storage's content
/// type unless it is a generic default; else a guess from the file name;
/// else `application/octet-stream`.
pub fn content_type(registered: Option<&str>, meta: &ObjectMeta, file_name: &str) -> String {
    if let Some(ct) = registered {
        return ct.to_owned();
    }
    match meta.content_type.as_deref() {
        Some(ct) if ct != "application/octet-stream" && ct != "binary/octet-stream" => ct.to_owned(),
        _ => mime_guess::from_path(file_name).first_or_octet_stream().essence_str().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_disposition_forms() {
        assert_eq!(content_disposition("app-1.0.tar.gz"), "attachment; filename=\"app-1.0.tar.gz\"");
        assert_eq!(content_disposition("My App.dmg"), "attachment; filename=\"My App.dmg\"");
        assert_eq!(
            content_disposition("café «1».zip"),
            "attachment; filename=\"caf_ _1_.zip\"; filename*=UTF-8''caf%C3%A9%20%C2%AB1%C2%BB.zip"
        );
        assert_eq!(content_disposition("a\"b.zip"), "attachment; filename=\"a_b.zip\"; filename*=UTF-8''a%22b.zip");
    }

    #[test]
    fn content_type_prefers_specific_storage_types() {
        let mut m =
            ObjectMeta { size: 1, last_modified: std::time::UNIX_EPOCH, etag: "\"x\"".into(), content_type: None };
        assert_eq!(content_type(None, &m, "a.zip"), "application/zip");
        assert_eq!(content_type(None, &m, "a.unknownext"), "application/octet-stream");
        m.content_type = Some("binary/octet-stream".into());
        assert_eq!(content_type(None, &m, "a.zip"), "application/zip");
        m.content_type = Some("application/x-apple-diskimage".into());
        assert_eq!(content_type(None, &m, "a.zip"), "application/x-apple-diskimage");
        // The artifact's registered type wins, even a generic one.
        assert_eq!(content_type(Some("application/gzip"), &m, "a.zip"), "application/gzip");
        assert_eq!(content_type(Some("application/octet-stream"), &m, "a.zip"), "application/octet-stream");
    }
}
