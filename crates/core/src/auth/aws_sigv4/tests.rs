//! The signer against AWS's SigV4 test suite (aws-c-auth's `aws-signing-test-suite/v4`, as
//! smithy-rs ships it: each case's request, its canonical request and its signature, copied
//! here) and against botocore's `SigV4Auth`/`S3SigV4Auth` for whole requests as Latchkey
//! sends them (the e2e tests compare with botocore on the wire too).

use http::{HeaderMap, Method};
use url::Url;

use super::*;

const ID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

/// A clock stopped at one instant.
struct At(i64);

impl crate::clock::Clock for At {
    fn now_ms(&self) -> i64 {
        self.0
    }
    fn sleep(&self, _: std::time::Duration) -> crate::clock::Sleep {
        Box::pin(std::future::pending())
    }
}

/// One suite case: the canonical request from its parts, and the signature over it.
fn suite(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    payload: &str,
    amz_date: &str,
    expected_canonical: &str,
    expected_signature: &str,
) {
    let signer = AwsSigner::new("us-east-1", "service");
    let mut url = Url::parse(url).unwrap();
    let query = encode_query(&mut url);
    let uri = signer.canonical_uri(&mut url);
    let mut signed: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.split_ascii_whitespace().collect::<Vec<_>>().join(" ")))
        .collect();
    signed.sort();
    let canonical = canonical_request(method, &uri, &query, &signed, payload);
    assert_eq!(canonical, expected_canonical);
    if !expected_signature.is_empty() {
        let scope = format!("{}/us-east-1/service/aws4_request", &amz_date[..8]);
        assert_eq!(signer.signature(SECRET, amz_date, &scope, &canonical), expected_signature);
    }
}

const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const DATE: &str = "20150830T123600Z";

#[test]
fn suite_get_vanilla() {
    suite(
        "GET",
        "https://example.amazonaws.com/",
        &[("host", "example.amazonaws.com"), ("x-amz-date", DATE)],
        EMPTY,
        DATE,
        &format!("GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:{DATE}\n\nhost;x-amz-date\n{EMPTY}"),
        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    );
}

#[test]
fn suite_get_vanilla_query_order_key_case() {
    suite(
        "GET",
        "https://example.amazonaws.com/?Param2=value2&Param1=value1",
        &[("host", "example.amazonaws.com"), ("x-amz-date", DATE)],
        EMPTY,
        DATE,
        &format!(
            "GET\n/\nParam1=value1&Param2=value2\nhost:example.amazonaws.com\nx-amz-date:{DATE}\n\nhost;x-amz-date\n{EMPTY}"
        ),
        "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
    );
}

#[test]
fn suite_get_vanilla_query_unreserved() {
    let unreserved = "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    suite(
        "GET",
        &format!("https://example.amazonaws.com/?{unreserved}={unreserved}"),
        &[("host", "example.amazonaws.com"), ("x-amz-date", DATE)],
        EMPTY,
        DATE,
        &format!(
            "GET\n/\n{unreserved}={unreserved}\nhost:example.amazonaws.com\nx-amz-date:{DATE}\n\nhost;x-amz-date\n{EMPTY}"
        ),
        "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197",
    );
}

#[test]
fn suite_get_vanilla_with_session_token() {
    let token = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";
    suite(
        "GET",
        "https://example.amazonaws.com/",
        &[("host", "example.amazonaws.com"), ("x-amz-date", DATE), ("x-amz-security-token", token)],
        EMPTY,
        DATE,
        &format!(
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:{DATE}\nx-amz-security-token:{token}\n\n\
             host;x-amz-date;x-amz-security-token\n{EMPTY}"
        ),
        "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8",
    );
}

#[test]
fn suite_get_header_value_trim() {
    suite(
        "GET",
        "https://example.amazonaws.com/",
        &[
            ("host", "example.amazonaws.com"),
            ("My-Header1", " value1"),
            ("My-Header2", " \"a   b   c\""),
            ("x-amz-date", DATE),
        ],
        EMPTY,
        DATE,
        &format!(
            "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:\"a b c\"\nx-amz-date:{DATE}\n\n\
             host;my-header1;my-header2;x-amz-date\n{EMPTY}"
        ),
        "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
    );
}

#[test]
fn suite_post_x_www_form_urlencoded() {
    let hash = "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e";
    assert_eq!(latchkey_vault::to_hex(&latchkey_vault::sha256(b"Param1=value1")), hash);
    suite(
        "POST",
        "https://example.amazonaws.com/",
        &[
            ("content-length", "13"),
            ("content-type", "application/x-www-form-urlencoded"),
            ("host", "example.amazonaws.com"),
            ("x-amz-content-sha256", hash),
            ("x-amz-date", DATE),
        ],
        hash,
        DATE,
        &format!(
            "POST\n/\n\ncontent-length:13\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\n\
             x-amz-content-sha256:{hash}\nx-amz-date:{DATE}\n\n\
             content-length;content-type;host;x-amz-content-sha256;x-amz-date\n{hash}"
        ),
        "d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b",
    );
}

#[test]
fn suite_post_vanilla_query_and_slashes_normalized() {
    suite(
        "POST",
        "https://example.amazonaws.com/?Param1=value1",
        &[("host", "example.amazonaws.com"), ("x-amz-date", DATE)],
        EMPTY,
        DATE,
        &format!("POST\n/\nParam1=value1\nhost:example.amazonaws.com\nx-amz-date:{DATE}\n\nhost;x-amz-date\n{EMPTY}"),
        "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11",
    );
    suite(
        "GET",
        "https://example.amazonaws.com//example//",
        &[("host", "example.amazonaws.com"), ("x-amz-date", DATE)],
        EMPTY,
        DATE,
        &format!("GET\n/example/\n\nhost:example.amazonaws.com\nx-amz-date:{DATE}\n\nhost;x-amz-date\n{EMPTY}"),
        "9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84",
    );
}

#[test]
fn suite_double_encoded_paths_outside_s3() {
    let date = "20210511T154045Z";
    suite(
        "POST",
        "https://tj9n5r0m12.execute-api.us-east-1.amazonaws.com/test/@connections/JBDvjfGEIAMCERw%3D",
        &[("host", "tj9n5r0m12.execute-api.us-east-1.amazonaws.com"), ("x-amz-date", date)],
        EMPTY,
        date,
        &format!(
            "POST\n/test/%40connections/JBDvjfGEIAMCERw%253D\n\nhost:tj9n5r0m12.execute-api.us-east-1.amazonaws.com\n\
             x-amz-date:{date}\n\nhost;x-amz-date\n{EMPTY}"
        ),
        "",
    );
    suite(
        "POST",
        "https://lambda.us-east-2.amazonaws.com/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-west-2%3A892717189312%3Afunction%3Amy-rusty-fun/invocations",
        &[("host", "lambda.us-east-2.amazonaws.com"), ("x-amz-date", date)],
        EMPTY,
        date,
        &format!(
            "POST\n/2015-03-31/functions/arn%253Aaws%253Alambda%253Aus-west-2%253A892717189312%253Afunction%253Amy-rusty-fun/invocations\n\n\
             host:lambda.us-east-2.amazonaws.com\nx-amz-date:{date}\n\nhost;x-amz-date\n{EMPTY}"
        ),
        "",
    );
}

/// Signs a whole request as the call path does, at 2026-12-06T10:00:00Z.
fn sign(
    signer: &StaticKeys,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> (Url, HeaderMap) {
    let mut url = Url::parse(url).unwrap();
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
    }
    signer
        .sign(&mut Unsigned { method: &method, url: &mut url, headers: &mut map, body, clock: &At(1_796_551_200_000) })
        .unwrap();
    (url, map)
}

// The expected values below are botocore 1.43.11's: `SigV4Auth(Credentials("AKIDEXAMPLE",
// SECRET, token), "sqs", "us-east-1")` (`S3SigV4Auth(..., "s3", ...)`), given the request as
// Latchkey sends it, `canonical_request`, `string_to_sign` and `signature` at the same time.

#[test]
fn a_whole_request_signs_as_botocore_signs_it() {
    let token = SecretString::from("session-token-1");
    let keys =
        StaticKeys::new(AwsSigner::new("us-east-1", "sqs"), ID, &SecretString::from(SECRET), Some(&token)).unwrap();
    let (url, headers) = sign(
        &keys,
        Method::POST,
        "https://sqs.us-east-1.amazonaws.com/123456789012/my queue/café?b=2&a=1&a=0&c=x%2By",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("x-amz-meta-note", "  a   b "),
            ("authorization", "Basic caller"),
            ("x-amz-date", "19990101T000000Z"),
            ("user-agent", "not signed"),
        ],
        Some(b"Action=SendMessage&MessageBody=hi"),
    );
    assert_eq!(
        url.as_str(),
        "https://sqs.us-east-1.amazonaws.com/123456789012/my%20queue/caf%C3%A9?b=2&a=1&a=0&c=x%2By"
    );
    assert_eq!(headers["x-amz-date"], "20261206T100000Z");
    assert_eq!(headers["x-amz-content-sha256"], "a8b0b22b91844aed096e46a61ed0951346cc36b6e219d6e51cfbdad65c496981");
    assert_eq!(headers["x-amz-security-token"], "session-token-1");
    assert!(headers["x-amz-security-token"].is_sensitive());
    assert_eq!(
        headers["authorization"],
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261206/us-east-1/sqs/aws4_request, \
         SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-meta-note;x-amz-security-token, \
         Signature=b91150f23fe83d83c0ea17ace950136e9241c007cbda5e99c4b4f0fc87be6460"
    );
    assert_eq!(headers.get_all("authorization").iter().count(), 1);
    assert!(headers["authorization"].is_sensitive());
}

#[test]
fn s3_signs_the_path_as_sent_and_a_streamed_body_unsigned() {
    let keys = StaticKeys::new(AwsSigner::new("us-east-1", "s3"), ID, &SecretString::from(SECRET), None).unwrap();
    let (url, headers) = sign(
        &keys,
        Method::POST,
        "https://bucket.s3.amazonaws.com/a b/café!",
        &[("x-amz-security-token", "the caller's")],
        None,
    );
    assert_eq!(url.path(), "/a%20b/caf%C3%A9%21", "each segment re-encoded as signed");
    assert_eq!(headers["x-amz-content-sha256"], UNSIGNED_PAYLOAD);
    assert!(headers.get("x-amz-security-token").is_none(), "a caller's token is not sent with other keys");
    assert_eq!(
        headers["authorization"],
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261206/us-east-1/s3/aws4_request, \
         SignedHeaders=host;x-amz-content-sha256;x-amz-date, \
         Signature=8e0adcf1c385df9d372c194570dc4baf488e541a58e190a33ccd58589d6fb36c"
    );
}

#[test]
fn the_query_is_sent_as_signed() {
    let mut url = Url::parse("https://h.example/?b=%7e+x&a&&c=%2F").unwrap();
    assert_eq!(encode_query(&mut url), "a=&b=~%20x&c=%2F");
    assert_eq!(url.query(), Some("b=~%20x&a=&c=%2F"), "the caller's order, SigV4's encoding");
    let mut url = Url::parse("https://h.example/?k=%ff%2b+%C3%BC&%41=").unwrap();
    assert_eq!(encode_query(&mut url), "A=&k=%FF%2B%20%C3%BC", "bytes kept, hex upper-cased");
    let mut url = Url::parse("https://h.example/p?").unwrap();
    assert_eq!(encode_query(&mut url), "");
    assert_eq!(url.as_str(), "https://h.example/p");
}

#[test]
fn a_port_is_part_of_the_signed_host() {
    let keys = StaticKeys::new(AwsSigner::new("us-east-1", "sqs"), ID, &SecretString::from(SECRET), None).unwrap();
    let mut url = Url::parse("http://127.0.0.1:4566/").unwrap();
    assert_eq!(host(&url), "127.0.0.1:4566");
    url.set_port(None).unwrap();
    assert_eq!(host(&url), "127.0.0.1");
    let (_, headers) = sign(&keys, Method::GET, "http://127.0.0.1:4566/", &[], Some(b""));
    assert_eq!(headers["x-amz-content-sha256"], EMPTY);
}

#[test]
fn a_header_it_cannot_sign_is_the_callers_error_and_debug_shows_no_secret() {
    let keys =
        StaticKeys::new(AwsSigner::new("us-east-1", "sqs"), ID, &SecretString::from("sk-canary-1"), None).unwrap();
    let mut map = HeaderMap::new();
    map.insert("x-amz-meta-x", HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
    let e = keys
        .sign(&mut Unsigned {
            method: &Method::GET,
            url: &mut Url::parse("https://h.example/").unwrap(),
            headers: &mut map,
            body: None,
            clock: &At(0),
        })
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidParams);
    assert!(e.message.contains("x-amz-meta-x"), "{}", e.message);
    let token = SecretString::from("st-canary-2");
    let keys =
        StaticKeys::new(AwsSigner::new("us-east-1", "sqs"), ID, &SecretString::from("sk-canary-1"), Some(&token))
            .unwrap();
    let shown = format!("{keys:?}");
    assert!(!shown.contains("canary"), "{shown}");
    assert!(shown.contains(ID));
    let e = StaticKeys::new(
        AwsSigner::new("us-east-1", "sqs"),
        ID,
        &SecretString::from("s"),
        Some(&SecretString::from("st-canary\n3")),
    )
    .unwrap_err();
    assert!(!e.message.contains("canary"));
}

#[test]
fn amz_date_is_utc_seconds() {
    assert_eq!(amz_date(1_440_938_160_999).unwrap(), "20150830T123600Z");
    assert_eq!(amz_date(0).unwrap(), "19700101T000000Z");
}
