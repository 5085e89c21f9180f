//! `aws_sigv4` against real implementations: moto (PyPI) in server mode checking every
//! signature with the keys it made (SQS), and botocore's own signer computing the signature of
//! the exact request Latchkey sent (recorded), for named calls and the proxy, live and dev.

use serde_json::json;

use latchkey_testkit::canary::{self, canary};
use latchkey_testkit::peers::moto::{Keys, botocore_signature, moto};
use latchkey_testkit::recorder::Recorder;

use super::*;

/// SQS's JSON protocol: `CreateQueue` by a named call (its body in memory, so hashed), and
/// `ReceiveMessage` by its query.
fn sqs_calls(connector: &str) -> String {
    format!(
        r#"
[connectors.{connector}.calls.create]
method = "POST"
path = "/"
headers = {{ "X-Amz-Target" = "AmazonSQS.CreateQueue", "Content-Type" = "application/x-amz-json-1.0" }}
body = '{{"QueueName": "<name>"}}'
[connectors.{connector}.calls.create.params]
name = {{ required = true }}
"#
    )
}

fn sqs_connector(name: &str, base_url: &str, auth: &str) -> String {
    format!("[connectors.{name}]\nbase_url = \"{base_url}\"\nauth = {auth}\n{}", sqs_calls(name))
}

/// A form POSTed through the proxy: with its length (held in memory, so hashed), or chunked
/// (streamed through, so `UNSIGNED-PAYLOAD`).
async fn proxied_form(lk: &Latchkey, key: &str, connector: &str, path: &str, form: &str, streamed: bool) -> Reply {
    let req = lk
        .http
        .post(lk.url(&format!("/v1/proxy/{connector}{path}")))
        .bearer_auth(key)
        .header("content-type", "application/x-www-form-urlencoded");
    let req = if streamed {
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> = form.as_bytes().chunks(7).map(|c| Ok(c.to_vec())).collect();
        req.body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
    } else {
        req.body(form.to_owned())
    };
    Reply::read(req.send().await.unwrap()).await
}

/// The queue URL's path in a `CreateQueue` answer (JSON protocol).
fn queue_path(r: &Reply) -> String {
    let url = r.json()["QueueUrl"].as_str().unwrap_or_else(|| panic!("no QueueUrl: {}", r.body)).to_owned();
    url.split_once("/123456789012/").map(|(_, q)| format!("/123456789012/{q}")).unwrap()
}

/// Static keys moto made: a named call (a JSON body, hashed) creates a queue, the proxy sends a
/// message to it (a streamed form body, `UNSIGNED-PAYLOAD`) and receives it back (a GET with a
/// query in the caller's order); dev without its own values falls back to live. A wrong secret
/// gets moto's `403 SignatureDoesNotMatch`, passed through.
#[tokio::test]
async fn static_keys_sign_named_calls_and_the_proxy_that_moto_checks() {
    let moto = moto();
    let auth = format!(
        r#"{{ method = "aws_sigv4", access_key_id = "{}", secret_access_key = {{ secret = "aws_secret" }}, region = "us-east-1", service = "sqs" }}"#,
        moto.user.access_key_id
    );
    let lk = Latchkey::start(bin(), &sqs_connector("sqs", &moto.base_url, &auth));
    lk.put_secret("aws_secret", "live", &moto.user.secret_access_key).await;
    let (live, dev) = (lk.app_key("live").await, lk.app_key("dev").await);

    let r = lk.call(&live, "sqs", "create", json!({"name": "static-live"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let queue = queue_path(&r);
    let queue_url: String =
        url::form_urlencoded::byte_serialize(format!("{}{queue}", moto.base_url).as_bytes()).collect();
    let form = format!("Action=SendMessage&Version=2012-11-05&MessageBody=hello%20%C3%BC+there&QueueUrl={queue_url}");
    let r = proxied_form(&lk, &live, "sqs", &queue, &form, true).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("<MD5OfMessageBody>"), "{}", r.body);
    let path = format!("/v1/proxy/sqs{queue}?Version=2012-11-05&Action=ReceiveMessage&WaitTimeSeconds=0");
    let r = Reply::read(lk.http.get(lk.url(&path)).bearer_auth(&live).send().await.unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["Messages"][0]["Body"], "hello ü there", "{}", r.body);

    let r = lk.call(&dev, "sqs", "create", json!({"name": "static-dev"})).await;
    assert_eq!(r.status, 200, "dev falls back to the live secret: {}", r.body);

    // A wrong secret in dev: moto's refusal comes back as moto said it.
    lk.put_secret("aws_secret", "dev", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY").await;
    let r = lk.call(&dev, "sqs", "create", json!({"name": "static-dev"})).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("SignatureDoesNotMatch"), "{}", r.body);
    let r = proxied_form(&lk, &dev, "sqs", &queue, &form, false).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("SignatureDoesNotMatch"), "{}", r.body);
    // Live still signs with its own.
    let r = lk.call(&live, "sqs", "create", json!({"name": "static-live-2"})).await;
    assert_eq!(r.status, 200, "{}", r.body);

    let output = lk.output();
    assert!(!output.contains(&moto.user.secret_access_key), "the secret key is in the log");
}

/// Temporary credentials with a session token, the key id a secret reference (so live and dev
/// may differ): moto checks the token too; without it the same keys are refused.
#[tokio::test]
async fn a_session_token_goes_with_temporary_keys_and_the_key_id_may_be_a_secret() {
    let moto = moto();
    let Keys { access_key_id, secret_access_key, session_token } = moto.temporary.clone();
    let token = session_token.unwrap();
    let auth = r#"{ method = "aws_sigv4", access_key_id = { secret = "aws_id" }, secret_access_key = { secret = "aws_secret" }, session_token = { secret = "aws_token" }, region = "us-east-1", service = "sqs" }"#;
    let config = format!(
        "{}\n{}",
        sqs_connector("tmp", &moto.base_url, auth),
        sqs_connector(
            "no_token",
            &moto.base_url,
            r#"{ method = "aws_sigv4", access_key_id = { secret = "aws_id" }, secret_access_key = { secret = "aws_secret" }, region = "us-east-1", service = "sqs" }"#
        )
    );
    let lk = Latchkey::start(bin(), &config);
    lk.put_secret("aws_id", "dev", &access_key_id).await;
    lk.put_secret("aws_id", "live", "not a key id").await;
    lk.put_secret("aws_secret", "dev", &secret_access_key).await;
    lk.put_secret("aws_secret", "live", "not-the-dev-secret").await;
    lk.put_secret("aws_token", "dev", &token).await;
    let dev = lk.app_key("dev").await;

    let r = lk.call(&dev, "tmp", "create", json!({"name": "temporary"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = lk.call(&dev, "no_token", "create", json!({"name": "temporary"})).await;
    assert_eq!(r.status, 403, "temporary keys without their token: {}", r.body);
    let live = lk.app_key("live").await;
    let r = lk.call(&live, "tmp", "create", json!({"name": "temporary"})).await;
    assert_eq!((r.status, r.error_code()), (424, Some("secret_missing")), "{}", r.body);
    assert!(r.body.contains("secret `aws_id` (auth.access_key_id) is not an AWS access key id"), "{}", r.body);
    lk.put_secret("aws_id", "live", "AKIANOTTHEDEVKEY0000").await;
    let r = lk.call(&live, "tmp", "create", json!({"name": "temporary"})).await;
    assert_eq!((r.status, r.error_code()), (424, Some("secret_missing")), "{}", r.body);
    assert!(r.body.contains("secret `aws_token` has no live value"), "{}", r.body);

    let output = lk.output();
    for secret in [&secret_access_key, &token] {
        assert!(!output.contains(secret.as_str()), "a secret is in the log");
    }
}

/// What a request recorded on the wire is, as botocore takes it: its URL, its headers, its
/// body (`None` when Latchkey sent it unsigned).
fn reference_for(rec: &latchkey_testkit::recorder::Recorded, base_url: &str, service: &str, region: &str, keys: &Keys) {
    let authorization = rec.header("authorization").expect("signed");
    let sent = authorization.rsplit_once("Signature=").unwrap().1;
    let hash = rec.header("x-amz-content-sha256").expect("the payload hash is sent");
    let body = (hash != "UNSIGNED-PAYLOAD").then_some(rec.body.as_slice());
    let url = format!("{base_url}{}", rec.uri);
    let reference = botocore_signature(&rec.method, &url, &rec.headers, body, region, service, keys);
    assert_eq!(reference.payload, hash, "{}", reference.canonical);
    assert_eq!(sent, reference.signature, "botocore signs {} {url} otherwise:\n{}", rec.method, reference.canonical);
}

/// botocore's `SigV4Auth` (and `S3SigV4Auth`) over the exact requests Latchkey sent: a path with
/// a space and non-ASCII, a query with repeated and unsorted names, a body in memory (hashed)
/// and a streamed one (unsigned), a session token; the secrets appear in no log or answer.
#[tokio::test]
async fn botocore_computes_the_signature_latchkey_sent() {
    let rec = Recorder::start().await;
    let keys = Keys {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: canary("awssecret"),
        session_token: Some(canary("awstoken")),
    };
    let auth = |service: &str| {
        format!(
            r#"{{ method = "aws_sigv4", access_key_id = "AKIDEXAMPLE", secret_access_key = {{ secret = "s" }}, session_token = {{ secret = "t" }}, region = "eu-west-3", service = "{service}" }}"#
        )
    };
    let config = format!(
        "{}\n[connectors.bucket]\nbase_url = \"{}/store\"\nauth = {}\n",
        sqs_connector("api", &rec.base_url, &auth("sqs")),
        rec.base_url,
        auth("s3")
    );
    let lk = Latchkey::start(bin(), &config);
    lk.put_secret("s", "live", &keys.secret_access_key).await;
    lk.put_secret("t", "live", keys.session_token.as_deref().unwrap()).await;
    let live = lk.app_key("live").await;

    let mut answers = String::new();
    let r = lk.call(&live, "api", "create", json!({"name": "a b ü"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    answers.push_str(&r.all_text());
    let r = proxied_form(
        &lk,
        &live,
        "api",
        "/my%20queue/caf%C3%A9/x!y?b=2&a=1&a=0&c=x%2By&d",
        "Action=Send&Body=%E2%9C%93",
        true,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    answers.push_str(&r.all_text());
    let r = proxied_form(&lk, &live, "bucket", "/my%20key/caf%C3%A9!?tagging&b=2&a=1", "bytes", false).await;
    assert_eq!(r.status, 200, "{}", r.body);
    answers.push_str(&r.all_text());

    let sent = rec.requests();
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[1].uri, "/my%20queue/caf%C3%A9/x!y?b=2&a=1&a=0&c=x%2By&d=", "sent as signed");
    assert_eq!(sent[1].header("x-amz-content-sha256"), Some("UNSIGNED-PAYLOAD"));
    assert_eq!(sent[2].uri, "/store/my%20key/caf%C3%A9%21?tagging=&b=2&a=1", "S3: each segment as signed");
    assert_ne!(sent[0].header("x-amz-content-sha256"), Some("UNSIGNED-PAYLOAD"), "a named call's body is hashed");
    assert_ne!(sent[2].header("x-amz-content-sha256"), Some("UNSIGNED-PAYLOAD"), "a small proxied body is hashed");
    reference_for(&sent[0], &rec.base_url, "sqs", "eu-west-3", &keys);
    reference_for(&sent[1], &rec.base_url, "sqs", "eu-west-3", &keys);
    reference_for(&sent[2], &rec.base_url, "s3", "eu-west-3", &keys);

    // The secret key never travels; neither secret is in a log or an answer.
    let secrets = [keys.secret_access_key.clone(), keys.session_token.clone().unwrap()];
    let wire: Vec<u8> = sent.iter().flat_map(|r| format!("{:?}{}", r.headers, r.uri).into_bytes()).collect();
    assert_eq!(canary::find(&wire, &secrets[..1]), Vec::<&str>::new());
    assert_eq!(canary::find(lk.output().as_bytes(), &secrets), Vec::<&str>::new());
    assert_eq!(canary::find(answers.as_bytes(), &secrets[..1]), Vec::<&str>::new());
}

/// A call the recorder answers `403 ExpiredToken` for the session token it first saw there.
const EXPIRED: &str = r#"
[connectors.role_rec.calls.expired]
method = "POST"
path = "/aws-expired"
body = '{"QueueName": "q"}'
"#;

/// `role_arn`: STS `AssumeRole` at moto, signed with the connector's keys; its temporary
/// credentials sign SQS calls moto checks (named and proxied), are obtained once and reused
/// (the lifecycle holds them, sealed), and appear in no log or answer. A refusal by STS is
/// `token_request_failed`, terminal, with moto's code.
#[tokio::test]
async fn role_arn_assumes_the_role_at_sts_and_signs_with_its_temporary_credentials() {
    let moto = moto();
    let rec = Recorder::start().await;
    let auth = format!(
        r#"{{ method = "aws_sigv4", access_key_id = "{}", secret_access_key = {{ secret = "aws_secret" }}, region = "us-east-1", service = "sqs", role_arn = "{}", sts_url = "{}/" }}"#,
        moto.user.access_key_id, moto.role_arn, moto.base_url
    );
    let config = format!(
        "{}\n{}\n{EXPIRED}",
        sqs_connector("role", &moto.base_url, &auth),
        sqs_connector("role_rec", &rec.base_url, &auth)
    );
    let lk = Latchkey::start(bin(), &config);
    lk.put_secret("aws_secret", "live", &moto.user.secret_access_key).await;
    let live = lk.app_key("live").await;

    let r = lk.call(&live, "role", "create", json!({"name": "assumed"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let queue = queue_path(&r);
    let queue_url: String =
        url::form_urlencoded::byte_serialize(format!("{}{queue}", moto.base_url).as_bytes()).collect();
    let form = format!("Action=SendMessage&Version=2012-11-05&MessageBody=from-the-role&QueueUrl={queue_url}");
    let r = proxied_form(&lk, &live, "role", &queue, &form, false).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = proxied_form(&lk, &live, "role", &queue, &form, true).await;
    assert_eq!(r.status, 200, "a streamed body too: {}", r.body);

    // What goes out: temporary keys (ASIA…) with their session token, the same for each call.
    // Four calls at once on a connector that holds no credentials yet, then one more.
    let calls = (0..4).map(|i| lk.call(&live, "role_rec", "create", json!({"name": format!("q{i}")})));
    for r in futures_util::future::join_all(calls).await {
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = lk.call(&live, "role_rec", "create", json!({"name": "later"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let sent = rec.requests();
    assert_eq!(sent.len(), 5);
    let authorization = |i: usize| sent[i].header("authorization").unwrap().to_owned();
    assert!(authorization(0).starts_with("AWS4-HMAC-SHA256 Credential=ASIA"), "{}", authorization(0));
    assert!(authorization(0).contains("/us-east-1/sqs/aws4_request"), "{}", authorization(0));
    let key_id = |i: usize| authorization(i).split('/').next().unwrap().to_owned();
    for i in 1..5 {
        assert_eq!(key_id(0), key_id(i), "one AssumeRole for every call");
    }
    assert_ne!(key_id(0), format!("AWS4-HMAC-SHA256 Credential={}", moto.user.access_key_id));
    let token = sent[0].header("x-amz-security-token").expect("the session token").to_owned();
    assert!(authorization(0).contains("x-amz-security-token"), "the token is signed");

    // AWS says the temporary credentials expired (`403 ExpiredToken`): replaced once, the
    // call sent again with the new ones.
    let r = lk.call(&live, "role_rec", "expired", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let sent = rec.requests();
    let expired: Vec<_> = sent.iter().filter(|r| r.uri.ends_with("/aws-expired")).collect();
    assert_eq!(expired.len(), 2, "{expired:?}");
    assert_eq!(expired[0].header("x-amz-security-token"), Some(token.as_str()), "the held credentials first");
    assert_ne!(expired[1].header("x-amz-security-token"), Some(token.as_str()), "then new ones");
    assert_eq!(expired[0].body, expired[1].body, "the same request again");

    // The temporary credentials STS gave Latchkey, as moto holds them (its model data).
    let data: serde_json::Value =
        lk.http.get(format!("{}/moto-api/data.json", moto.base_url)).send().await.unwrap().json().await.unwrap();
    let assumed: Vec<Keys> = data["sts"]["AssumedRole"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["session_name"].as_str().is_some_and(|n| n.starts_with("latchkey-role")))
        .map(|r| Keys {
            access_key_id: r["access_key_id"].as_str().unwrap().to_owned(),
            secret_access_key: r["secret_access_key"].as_str().unwrap().to_owned(),
            session_token: r["session_token"].as_str().map(str::to_owned),
        })
        .collect();
    assert!(assumed.len() >= 3, "role, role_rec, role_rec again: {}", assumed.len());
    // botocore signs what went out with them as Latchkey did.
    let used = assumed.iter().find(|k| k.session_token.as_deref() == Some(token.as_str())).expect("moto made it");
    reference_for(&sent[0], &rec.base_url, "sqs", "us-east-1", used);

    // Secrets in no log, answer or stored byte: the base secret, every temporary secret key and
    // session token; the temporary secret keys are not on the wire either.
    let mut secrets = vec![moto.user.secret_access_key.clone()];
    secrets.extend(assumed.iter().flat_map(|k| [k.secret_access_key.clone(), k.session_token.clone().unwrap()]));
    assert_eq!(canary::find(lk.output().as_bytes(), &secrets), Vec::<&str>::new());
    assert_eq!(canary::find(&canary::read_dir_bytes(&lk.data_dir), &secrets), Vec::<&str>::new());
    for path in ["/v1/admin/tokens", "/v1/admin/events"] {
        let r = Reply::read(lk.admin_req(reqwest::Method::GET, path).send().await.unwrap()).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(canary::find(r.body.as_bytes(), &secrets), Vec::<&str>::new(), "{path}: {}", r.body);
    }
    let wire: Vec<u8> = rec.requests().iter().flat_map(|r| format!("{:?}{}", r.headers, r.uri).into_bytes()).collect();
    let temporary_keys: Vec<String> = assumed.iter().map(|k| k.secret_access_key.clone()).collect();
    assert_eq!(canary::find(&wire, &temporary_keys), Vec::<&str>::new());

    // `check --live` assumes the role at STS as a call would.
    let out = lk.cli(&["check", "--live"], None);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(&format!("role: ok (live, aws_sigv4): full grant at {}/", moto.base_url)), "{text}");

    // STS refuses a wrong base secret: terminal, moto's code, no secret in the answer.
    lk.put_secret("aws_secret", "dev", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY").await;
    let dev = lk.app_key("dev").await;
    let r = lk.call(&dev, "role", "create", json!({"name": "refused"})).await;
    assert_eq!((r.status, r.error_code()), (502, Some("token_request_failed")), "{}", r.body);
    let error = &r.json()["error"];
    assert_eq!(error["provider_error"], "SignatureDoesNotMatch", "{}", r.body);
    assert_eq!(error["terminal"], true, "{}", r.body);
    assert!(!r.body.contains("wJalrXUtnFEMI"), "{}", r.body);
}

/// `latchkey check` names each bad field of an `aws_sigv4` table.
#[test]
fn check_names_bad_aws_fields() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latchkey.toml");
    std::fs::write(
        &path,
        r#"[connectors.aws]
base_url = "https://sqs.us-east-1.amazonaws.com"
auth = { method = "aws_sigv4", access_key_id = "AKIA EXAMPLE", secret_access_key = { secret = "s" }, region = "US East", service = "sqs", role_arn = "arn:aws:iam::1234:role/r", sts_url = "http://sts.example.com/" }
"#,
    )
    .unwrap();
    let data = dir.path().join("data");
    let args = ["check", "--config", path.to_str().unwrap()];
    let out = latchkey_testkit::latchkey::run_cli(bin(), dir.path(), &data, &[], &args, None);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{text}");
    for expected in [
        "connector `aws`, field `auth.access_key_id`: is not an AWS access key id",
        "connector `aws`, field `auth.region`: `US East` is not an AWS region",
        "connector `aws`, field `auth.role_arn`: `arn:aws:iam::1234:role/r` is not an IAM role's ARN",
        "connector `aws`, field `auth.sts_url`: uses http:// to a host that is not loopback",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}
