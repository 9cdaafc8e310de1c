//! The presigned S3 URLs of `redirect` delivery are signed by the AWS SDK's
//! SigV4 signer (`aws-sigv4`, through `BlobStore::presign_download`); it
//! reproduces the published example byte for byte: AWS S3 API docs,
//! "Authenticating Requests: Using Query Parameters" (sigv4-query-string-auth),
//! as quoted in `tests/vectors/cdn-tokens.json`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::time::{Duration, UNIX_EPOCH};

use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use serde_json::Value;

#[test]
fn the_s3_presigned_get_example_is_reproduced() {
    let all: Value = serde_json::from_str(include_str!("vectors/cdn-tokens.json")).unwrap();
    let v = &all["s3_sigv4_presigned_get"];
    let text = |k: &str| v[k].as_str().unwrap();
    let credentials =
        aws_credential_types::Credentials::new(text("access_key"), text("secret_key"), None, None, "vector");
    let identity = credentials.into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(Duration::from_secs(v["expires"].as_u64().unwrap()));
    // S3 signs the path as sent.
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    // 20130524T000000Z
    let time = UNIX_EPOCH + Duration::from_secs(1_369_353_600);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(text("region"))
        .name("s3")
        .time(time)
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let host = text("bucket_host");
    let url = format!("https://{host}{}", text("path"));
    let signed = |url: &str| {
        let request =
            SignableRequest::new("GET", url, [("host", host)].into_iter(), SignableBody::UnsignedPayload).unwrap();
        sign(request, &params).unwrap().signature().to_owned()
    };
    assert_eq!(signed(&url), text("expected_signature"));
    // One character of the request changed: another signature.
    assert_ne!(signed(&url.replace("test.txt", "test.txu")), text("expected_signature"));
}
