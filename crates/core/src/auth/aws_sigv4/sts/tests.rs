//! `AssumeRole`'s exact request and the reading of STS's answers (the e2e tests run it against
//! moto).

use super::*;
use crate::token::{Answer, build};

const ROLE: &str = "arn:aws:iam::123456789012:role/latchkey-role";
/// 2026-12-06T10:00:00Z.
const NOW: i64 = 1_796_551_200_000;

fn grant(sts_url: &str, token: Option<&str>) -> AssumeRole {
    let secret = SecretString::from("sk-canary-base".to_owned());
    let token = token.map(|t| SecretString::from(t.to_owned()));
    AssumeRole::new("crm", ROLE, sts_url, "eu-west-3", ("AKIDEXAMPLE", &secret, token.as_ref()))
}

fn answer(status: u16, body: &str) -> Answer {
    Answer { status, headers: http::HeaderMap::new(), body: Ok(body.as_bytes().to_vec()) }
}

#[test]
fn the_request_is_a_signed_form_post_as_sent() {
    let req = grant("https://sts.eu-west-3.amazonaws.com/", Some("base-token-canary")).request(NOW).unwrap();
    let http = build(&req).unwrap();
    assert_eq!(http.method(), Method::POST);
    assert_eq!(http.uri(), "https://sts.eu-west-3.amazonaws.com/");
    let body = std::str::from_utf8(http.body().as_bytes()).unwrap().to_owned();
    assert_eq!(
        body,
        "Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Flatchkey-role\
         &RoleSessionName=latchkey-crm&DurationSeconds=3600"
    );
    let h = http.headers();
    assert_eq!(h.get_all(CONTENT_TYPE).iter().collect::<Vec<_>>(), ["application/x-www-form-urlencoded"]);
    assert_eq!(h["x-amz-date"], "20261206T100000Z");
    assert_eq!(h["x-amz-content-sha256"], latchkey_vault::to_hex(&latchkey_vault::sha256(body.as_bytes())));
    assert_eq!(h["x-amz-security-token"], "base-token-canary");
    let authorization = h["authorization"].to_str().unwrap();
    assert!(
        authorization.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261206/eu-west-3/sts/aws4_request, \
             SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token, Signature="
        ),
        "{authorization}"
    );
    // The same signature as the signer gives the request `build` sends.
    let mut url = url::Url::parse("https://sts.eu-west-3.amazonaws.com/").unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
    let token = HeaderValue::from_static("base-token-canary");
    let keys = Keys { access_key_id: "AKIDEXAMPLE", secret_access_key: "sk-canary-base", session_token: Some(&token) };
    AwsSigner::new("eu-west-3", "sts")
        .sign_with(
            &keys,
            &mut Unsigned {
                method: &Method::POST,
                url: &mut url,
                headers: &mut headers,
                body: Some(body.as_bytes()),
                clock: &At(NOW),
            },
        )
        .unwrap();
    assert_eq!(headers["authorization"], h["authorization"]);
    assert!(!format!("{req:?}{:?}", grant("https://sts.amazonaws.com/", None)).contains("canary"));
}

#[test]
fn the_signing_region_follows_the_sts_endpoint() {
    assert_eq!(signing_region("https://sts.amazonaws.com/", "eu-west-3"), "us-east-1");
    assert_eq!(signing_region("https://sts.ap-south-1.amazonaws.com/", "eu-west-3"), "ap-south-1");
    assert_eq!(signing_region("http://127.0.0.1:5000/", "eu-west-3"), "eu-west-3");
    assert_eq!(default_url("eu-west-3"), "https://sts.eu-west-3.amazonaws.com/");
}

const OK: &str = r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <Credentials>
      <AccessKeyId>ASIAEXAMPLE</AccessKeyId>
      <SecretAccessKey>temp/secret+key</SecretAccessKey>
      <SessionToken>FQoGZXIvYXdz&amp;token=</SessionToken>
      <Expiration>2026-12-06T11:00:00.5Z</Expiration>
    </Credentials>
    <AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/latchkey-role/latchkey-crm</Arn></AssumedRoleUser>
  </AssumeRoleResult>
</AssumeRoleResponse>"#;

fn parsed(status: u16, body: &str) -> Result<TokenSet, TokenError> {
    let req = grant("https://sts.eu-west-3.amazonaws.com/", Some("base-token-canary")).request(NOW).unwrap();
    crate::token::parse(&req, &answer(status, body), NOW)
}

#[test]
fn temporary_credentials_become_a_token_set() {
    let set = parsed(200, OK).unwrap();
    assert_eq!(set.access_token.expose_secret(), "FQoGZXIvYXdz&token=");
    assert_eq!(set.token_secret.as_ref().map(|s| s.expose_secret()), Some("temp/secret+key"));
    assert_eq!(set.extra.get("access_key_id"), Some(&Value::String("ASIAEXAMPLE".into())));
    assert_eq!(set.extra.len(), 1, "nothing else is kept");
    assert_eq!(set.expires_at, Some(NOW + 3_600_500));
    assert_eq!((set.obtained_at, set.refresh_token.is_none()), (NOW, true));

    // The call path signs with them.
    let mut url = url::Url::parse("https://sqs.eu-west-3.amazonaws.com/").unwrap();
    let mut headers = HeaderMap::new();
    let signer = AwsSigner::new("eu-west-3", "sqs");
    sign_with_token(
        &signer,
        &set,
        &mut Unsigned { method: &Method::GET, url: &mut url, headers: &mut headers, body: None, clock: &At(NOW) },
    )
    .unwrap();
    assert_eq!(headers["x-amz-security-token"], "FQoGZXIvYXdz&token=");
    assert!(headers["authorization"].to_str().unwrap().contains("Credential=ASIAEXAMPLE/20261206/eu-west-3/sqs/"));
    let bare = TokenSet { token_secret: None, ..set };
    let e = sign_with_token(
        &signer,
        &bare,
        &mut Unsigned { method: &Method::GET, url: &mut url, headers: &mut headers, body: None, clock: &At(NOW) },
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::Internal);
}

#[test]
fn a_refusal_is_terminal_with_the_providers_code_and_scrubbed_message() {
    let body = r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>
        <Code>AccessDenied</Code><Message>User is not authorized to perform sts:AssumeRole on arn:aws:iam::123456789012:role/latchkey-role with base-token-canary</Message>
        </Error><RequestId>r</RequestId></ErrorResponse>"#;
    let e = parsed(403, body).unwrap_err();
    assert_eq!(e.kind, TokenErrorKind::Refused);
    assert!(e.is_terminal());
    assert_eq!(e.error.as_deref(), Some("AccessDenied"));
    let d = e.description.clone().unwrap();
    assert!(
        d.contains("not authorized to perform sts:AssumeRole on arn:aws:iam::123456789012:role/latchkey-role"),
        "{d}"
    );
    assert!(!d.contains("base-token-canary") && d.contains("[REDACTED]"), "{d}");
    // moto's shape: `<Errors>` around the error.
    let moto = "<ErrorResponse><Errors><Error><Code>SignatureDoesNotMatch</Code><Message>m</Message></Error></Errors></ErrorResponse>";
    let e = parsed(403, moto).unwrap_err();
    assert_eq!((e.kind, e.error.as_deref()), (TokenErrorKind::Refused, Some("SignatureDoesNotMatch")));
}

#[test]
fn a_server_error_or_throttling_is_passing() {
    let e = parsed(500, "<ErrorResponse><Error><Code>InternalFailure</Code></Error></ErrorResponse>").unwrap_err();
    assert!(matches!(e.kind, TokenErrorKind::Failed { .. }), "{e:?}");
    let e = parsed(
        400,
        "<ErrorResponse><Error><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>",
    )
    .unwrap_err();
    assert!(matches!(e.kind, TokenErrorKind::Failed { .. }), "{e:?}");
    let e = parsed(503, "Service Unavailable").unwrap_err();
    assert!(matches!(e.kind, TokenErrorKind::Failed { .. }) && e.error.is_none(), "{e:?}");
}

#[test]
fn a_broken_answer_is_a_failure_not_a_token() {
    for (body, error) in [
        ("not xml", "no_token"),
        ("<AssumeRoleResponse/>", "no_token"),
        (&OK.replace("<SessionToken>FQoGZXIvYXdz&amp;token=</SessionToken>", "") as &str, "no_token"),
        (&OK.replace("2026-12-06T11:00:00.5Z", "tomorrow"), "invalid_expiration"),
        (&OK.replace("ASIAEXAMPLE", "ASIA&#10;X"), "invalid_access_token"),
        // A DTD is refused by the parser (no entity expansion).
        (&format!("<!DOCTYPE x [<!ENTITY a \"aaaa\">]>{OK}"), "no_token"),
    ] {
        let e = parsed(200, body).unwrap_err();
        assert!(matches!(e.kind, TokenErrorKind::Failed { .. }), "{body}: {e:?}");
        assert_eq!(e.error.as_deref(), Some(error), "{body}");
        assert!(!e.summary().contains("temp/secret"), "{e:?}");
    }
}
