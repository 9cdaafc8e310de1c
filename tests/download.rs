//! The data plane end to end: a real gateway on port 0 over both backends.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

#[macro_use]
mod common;

use common::{Backend, Blobs, Gateway, get, request, sha256_hex, test_bytes};
use http_body_util::BodyExt;

backend_suite!(
    local = super::Backend::Local, s3 = super::Backend::S3;
    full_download_matches_and_carries_headers,
    ranges_resume_and_refuse,
    validators_give_304_and_412,
    head_answers_from_metadata,
    token_failures_are_403_with_codes,
    missing_files_and_bad_paths,
    non_ascii_file_names,
    client_disconnect_releases_the_download,
);

const KEY: &str = "app/1.4.2/app-1.4.2-linux-x86_64.tar.gz";

async fn setup(backend: Backend, size: usize) -> (Blobs, Gateway, Vec<u8>) {
    let blobs = Blobs::new(backend).await;
    let data = test_bytes(size);
    blobs.put(KEY, &data).await;
    let gw = Gateway::start(&blobs.config()).await;
    (blobs, gw, data)
}

async fn full_download_matches_and_carries_headers(backend: Backend) {
    let (_blobs, gw, data) = setup(backend, 1_000_003).await;
    let r = get(gw.public, &gw.signed(KEY)).await;
    assert_eq!(r.status, 200);
    assert_eq!(sha256_hex(r.bytes()), sha256_hex(&data));
    assert_eq!(r.header("content-length"), Some("1000003"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert_eq!(r.header("content-type"), Some("application/gzip"));
    assert_eq!(r.header("content-disposition"), Some("attachment; filename=\"app-1.4.2-linux-x86_64.tar.gz\""));
    assert_eq!(r.header("cache-control"), Some("private"));
    assert!(r.header("etag").is_some_and(|e| e.starts_with('"')));
    assert!(r.header("last-modified").is_some_and(|d| httpdate::parse_http_date(d).is_ok()));
    assert!(r.header("x-request-id").is_some());
    assert!(gw.wait_for_no_downloads().await);
}

async fn ranges_resume_and_refuse(backend: Backend) {
    let (_blobs, gw, data) = setup(backend, 200_000).await;
    let url = gw.signed(KEY);
    let r = request(gw.public, "GET", &url, &[("range", "bytes=100-199")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 100-199/200000"));
    assert_eq!(r.header("content-length"), Some("100"));
    assert_eq!(&r.bytes()[..], &data[100..200]);

    // Resume: first part, then the rest; together they are the file.
    let first = request(gw.public, "GET", &url, &[("range", "bytes=0-65535")]).await;
    let rest = request(gw.public, "GET", &url, &[("range", "bytes=65536-")]).await;
    assert_eq!(rest.status, 206);
    let mut joined = first.bytes().to_vec();
    joined.extend_from_slice(rest.bytes());
    assert_eq!(sha256_hex(&joined), sha256_hex(&data));

    let suffix = request(gw.public, "GET", &url, &[("range", "bytes=-10")]).await;
    assert_eq!(&suffix.bytes()[..], &data[199_990..]);

    let r = request(gw.public, "GET", &url, &[("range", "bytes=200000-")]).await;
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */200000"));
    assert_eq!(r.code(), "range_not_satisfiable");

    // If-Range with a stale validator: the whole file instead of a wrong splice.
    let r = request(gw.public, "GET", &url, &[("range", "bytes=10-"), ("if-range", "\"stale\"")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.bytes().len(), 200_000);
    let etag = first.header("etag").unwrap().to_owned();
    let r = request(gw.public, "GET", &url, &[("range", "bytes=10-19"), ("if-range", &etag)]).await;
    assert_eq!(r.status, 206);

    // Several ranges (what electron-updater's differential downloads ask
    // for): 206 multipart/byteranges, each part its bytes and its
    // Content-Range, the length announced exactly; unsatisfiable members
    // dropped. HEAD announces the same without a body.
    let spec = "bytes=0-9, 100-199,150000-150009,-5,300000-";
    let r = request(gw.public, "GET", &url, &[("range", spec)]).await;
    assert_eq!(r.status, 206, "{r:?}");
    assert_eq!(r.header("content-length").unwrap().parse::<usize>().unwrap(), r.bytes().len());
    let parts = multipart(r.header("content-type").unwrap(), r.bytes());
    let want: Vec<(String, &[u8])> = vec![
        ("bytes 0-9/200000".into(), &data[..10]),
        ("bytes 100-199/200000".into(), &data[100..200]),
        ("bytes 150000-150009/200000".into(), &data[150_000..150_010]),
        ("bytes 199995-199999/200000".into(), &data[199_995..]),
    ];
    assert_eq!(parts.len(), want.len());
    for ((range, bytes), (want_range, want_bytes)) in parts.iter().zip(&want) {
        assert_eq!((range, &bytes[..]), (want_range, *want_bytes));
    }
    let head = request(gw.public, "HEAD", &url, &[("range", spec)]).await;
    assert_eq!((head.status, head.header("content-length")), (206, r.header("content-length")));
    assert!(head.bytes().is_empty());
    // What RFC 9110 §14.2 lets a server ignore, it ignores: overlapping or
    // descending ranges, more than the server serves; and one malformed
    // member spoils the set (more than 1000 ranges too). The whole file, 200.
    let set =
        |n: u64| format!("bytes={}", (0..n).map(|i| format!("{}-{}", i * 10, i * 10)).collect::<Vec<_>>().join(","));
    // 600 one-byte ranges: served, from a few storage reads.
    let r = request(gw.public, "GET", &url, &[("range", &set(600))]).await;
    assert_eq!(r.status, 206);
    let parts = multipart(r.header("content-type").unwrap(), r.bytes());
    assert_eq!(parts.len(), 600);
    for (i, (range, bytes)) in parts.iter().enumerate() {
        assert_eq!(
            (range.as_str(), &bytes[..]),
            (format!("bytes {0}-{0}/200000", i * 10).as_str(), &data[i * 10..=i * 10])
        );
    }
    let many = set(1001);
    for spec in ["bytes=0-99,50-60", "bytes=100-199,0-9", "bytes=0-9,x-1", many.as_str()] {
        let r = request(gw.public, "GET", &url, &[("range", spec)]).await;
        assert_eq!((r.status, r.bytes().len()), (200, 200_000), "{spec}");
    }
    // One satisfiable member among several is a plain 206.
    let r = request(gw.public, "GET", &url, &[("range", "bytes=5-9,900000-")]).await;
    assert_eq!((r.status, r.header("content-range")), (206, Some("bytes 5-9/200000")));
    assert!(gw.wait_for_no_downloads().await);
}

/// The parts of a `multipart/byteranges` body: each one's Content-Range
/// and bytes.
fn multipart(content_type: &str, body: &[u8]) -> Vec<(String, Vec<u8>)> {
    let boundary = content_type.strip_prefix("multipart/byteranges; boundary=").expect(content_type);
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut rest = body;
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let start = find(rest, delimiter.as_bytes()).expect("a first delimiter");
    rest = &rest[start + delimiter.len()..];
    while !rest.starts_with(b"--") {
        rest = rest.strip_prefix(b"\r\n").expect("CRLF after the delimiter");
        let end_of_headers = find(rest, b"\r\n\r\n").expect("part headers");
        let headers = std::str::from_utf8(&rest[..end_of_headers]).unwrap();
        let range = headers
            .lines()
            .find_map(|l| l.strip_prefix("Content-Range: "))
            .expect("a Content-Range per part")
            .to_owned();
        rest = &rest[end_of_headers + 4..];
        let next = find(rest, format!("\r\n{delimiter}").as_bytes()).expect("the next delimiter");
        parts.push((range, rest[..next].to_vec()));
        rest = &rest[next + 2 + delimiter.len()..];
    }
    assert_eq!(rest, b"--\r\n", "the closing delimiter ends the body");
    parts
}

async fn validators_give_304_and_412(backend: Backend) {
    let (_blobs, gw, _data) = setup(backend, 1000).await;
    let url = gw.signed(KEY);
    let first = request(gw.public, "HEAD", &url, &[]).await;
    let etag = first.header("etag").unwrap().to_owned();
    let modified = first.header("last-modified").unwrap().to_owned();
    let r = request(gw.public, "GET", &url, &[("if-none-match", &etag)]).await;
    assert_eq!(r.status, 304);
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert!(r.bytes().is_empty());
    let r = request(gw.public, "GET", &url, &[("if-modified-since", &modified)]).await;
    assert_eq!(r.status, 304);
    let r = request(gw.public, "GET", &url, &[("if-none-match", "\"other\"")]).await;
    assert_eq!(r.status, 200);
    let r = request(gw.public, "GET", &url, &[("if-match", "\"other\"")]).await;
    assert_eq!(r.status, 412);
    assert_eq!(r.code(), "precondition_failed");
}

async fn head_answers_from_metadata(backend: Backend) {
    let (_blobs, gw, _data) = setup(backend, 5000).await;
    let url = gw.signed(KEY);
    let r = request(gw.public, "HEAD", &url, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("5000"));
    assert!(r.bytes().is_empty());
    let r = request(gw.public, "HEAD", &url, &[("range", "bytes=0-9")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-length"), Some("10"));
    // HEAD never opened a download stream.
    assert_eq!(gw.state.active_downloads.get(), 0);
}

async fn token_failures_are_403_with_codes(backend: Backend) {
    let (_blobs, gw, _data) = setup(backend, 100).await;
    let good = gw.signed(KEY);
    assert_eq!(get(gw.public, &good).await.status, 200);

    // One character of the signature changed.
    let mut tampered = good.clone().into_bytes();
    let last = tampered.len() - 3;
    tampered[last] = if tampered[last] == b'a' { b'b' } else { b'a' };
    let tampered = String::from_utf8(tampered).unwrap();
    let now = tollgate::clock::unix_seconds(std::time::SystemTime::now());
    let cases = [
        (tampered, "invalid_signature"),
        (good.replace("exp=", "exp=1"), "invalid_signature"),
        (gw.signed_with(KEY, |c| c.expires = now - 3600), "expired"),
        (
            gw.signed_with(KEY, |c| {
                c.not_before = Some(now + 3600);
                c.expires = now + 7200;
            }),
            "not_yet_valid",
        ),
        (gw.signed_with(KEY, |c| c.client_net = Some("203.0.113.0/24".parse().unwrap())), "address_not_allowed"),
        (good.replace("kid=k1", "kid=k9"), "unknown_key"),
        (good.split("&sig=").next().unwrap().to_owned(), "malformed_token"),
        (format!("/d/{KEY}"), "malformed_token"),
    ];
    for (url, code) in cases {
        let r = get(gw.public, &url).await;
        assert_eq!(r.status, 403, "{url}");
        assert_eq!(r.code(), code, "{url}");
    }
    // A prefix token used outside its prefix.
    let prefix = gw.signed_with(KEY, |c| c.scope = tollgate::signing::UrlScope::Prefix("/d/app/9.9/".into()));
    let query = prefix.split_once('?').unwrap().1;
    let r = get(gw.public, &format!("/d/{KEY}?{query}")).await;
    assert_eq!(r.code(), "wrong_path");
    // ...and inside it.
    let inside = gw.signed_with(KEY, |c| c.scope = tollgate::signing::UrlScope::Prefix("/d/app/1.4.2/".into()));
    let query = inside.split_once('?').unwrap().1;
    assert_eq!(get(gw.public, &format!("/d/{KEY}?{query}")).await.status, 200);
    // A URL bound to the loopback network works from loopback.
    let bound = gw.signed_with(KEY, |c| c.client_net = Some("127.0.0.0/8".parse().unwrap()));
    assert_eq!(get(gw.public, &bound).await.status, 200);
}

async fn missing_files_and_bad_paths(backend: Backend) {
    let (_blobs, gw, _data) = setup(backend, 10).await;
    let r = get(gw.public, &gw.signed("app/1.4.2/missing.zip")).await;
    assert_eq!((r.status, r.code().as_str()), (404, "not_found"));
    for path in ["/d/app/1.4.2", "/d/app/../../etc/passwd", "/d/app/1.4.2/.hidden", "/d/a/b/c/d"] {
        let r = get(gw.public, &format!("{path}?exp=1&kid=k1&sig=x")).await;
        assert_eq!((r.status, r.code().as_str()), (400, "invalid_path"), "{path}");
    }
    // The bare prefix is a path of the data plane too, and as bad as the rest.
    let r = get(gw.public, "/d/").await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_path"), "/d/");
    let r = get(gw.public, "/nothing-here").await;
    assert_eq!((r.status, r.code().as_str()), (404, "not_found"));
    let r = request(gw.public, "POST", &gw.signed(KEY), &[]).await;
    assert_eq!((r.status, r.code().as_str()), (405, "method_not_allowed"));
    let r = get(gw.public, "/healthz").await;
    assert_eq!(r.status, 200);
}

async fn non_ascii_file_names(backend: Backend) {
    let blobs = Blobs::new(backend).await;
    let key = "app/2.0/Setup Café «x64».exe";
    blobs.put(key, b"MZ").await;
    let gw = Gateway::start(&blobs.config()).await;
    let url = gw.signed(key);
    assert!(url.starts_with("/d/app/2.0/Setup%20Caf%C3%A9%20%C2%ABx64%C2%BB.exe?"), "{url}");
    let r = get(gw.public, &url).await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.bytes()[..], b"MZ");
    assert_eq!(
        r.header("content-disposition"),
        Some("attachment; filename=\"Setup Caf_ _x64_.exe\"; filename*=UTF-8''Setup%20Caf%C3%A9%20%C2%ABx64%C2%BB.exe")
    );
}

async fn client_disconnect_releases_the_download(backend: Backend) {
    let (_blobs, gw, _data) = setup(backend, 16 * 1024 * 1024).await;
    let response = common::send(gw.public, "GET", &gw.signed(KEY), &[]).await;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.data_ref().is_some_and(|d| !d.is_empty()));
    assert_eq!(gw.state.active_downloads.get(), 1);
    // Hang up mid-download: the storage read must be cancelled, not run on.
    drop(body);
    assert!(gw.wait_for_no_downloads().await, "the download stream was not released");
}

#[tokio::test]
async fn local_file_truncated_mid_stream_cuts_the_response() {
    let (blobs, gw, _data) = setup(Backend::Local, 8 * 1024 * 1024).await;
    let response = common::send(gw.public, "GET", &gw.signed(KEY), &[]).await;
    assert_eq!(response.status(), 200);
    // Truncate the file under the open handle: the stream runs dry early.
    std::fs::OpenOptions::new().write(true).open(blobs.file_path(KEY)).unwrap().set_len(1024 * 1024).unwrap();
    let collected = response.into_body().collect().await;
    assert!(collected.is_err(), "a short body must end in an error, never as complete");
}

#[tokio::test]
async fn s3_dying_mid_stream_cuts_the_response() {
    let (blobs, gw, _data) = setup(Backend::S3, 32 * 1024 * 1024).await;
    let response = common::send(gw.public, "GET", &gw.signed(KEY), &[]).await;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut received = body.frame().await.unwrap().unwrap().into_data().unwrap().len();
    blobs.s3.as_ref().unwrap().kill();
    let outcome = loop {
        match body.frame().await {
            Some(Ok(frame)) => received += frame.data_ref().map_or(0, |d| d.len()),
            Some(Err(e)) => break Err(e),
            None => break Ok(()),
        }
    };
    assert!(outcome.is_err(), "got a clean end after {received} of {} bytes", 32 * 1024 * 1024);
    assert!(received < 32 * 1024 * 1024);
}

#[tokio::test]
async fn s3_down_gives_503_upstream_unavailable() {
    let (blobs, gw, _data) = setup(Backend::S3, 10).await;
    blobs.s3.as_ref().unwrap().kill();
    let r = get(gw.public, &gw.signed(KEY)).await;
    assert_eq!((r.status, r.code().as_str()), (503, "upstream_unavailable"));
    assert!(r.header("retry-after").is_some());
    let body = String::from_utf8_lossy(r.bytes()).to_string();
    assert!(!body.contains("127.0.0.1") && !body.contains("dispatch"), "internal detail leaked: {body}");
    let r = get(gw.admin, "/readyz").await;
    assert_eq!((r.status, r.code().as_str()), (503, "not_ready"));
}
