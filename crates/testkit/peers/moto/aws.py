"""Helpers for the AWS SigV4 tests, run by `latchkey_testkit::peers::moto`.

`setup URL`: while moto still takes unsigned actions, makes an IAM user with an access key and
a policy that allows everything, a role the user may assume (allowed SQS), and temporary
credentials of that role; prints them as JSON. Then turns signature checks on
(`/moto-api/reset-auth` with 0: every later action must be signed).

`sign`: botocore as the reference signer. Reads a request as Latchkey sent it (JSON on standard
input: method, url, headers as [name, value] pairs, body in base64, region, service and the
keys) and prints the signature botocore computes for it: over the headers the request's
`Authorization` names, at its `X-Amz-Date`, with `S3SigV4Auth` for s3 and `SigV4Auth` for the
others, the payload hash as botocore computes it (`UNSIGNED-PAYLOAD` when the request says it
is unsigned, which botocore does only when payload signing is off).
"""

import base64
import json
import sys
import urllib.request

import boto3
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

POLICY = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})


def setup(url):
    # Unsigned actions: any key works while moto does not check.
    kw = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id="setup", aws_secret_access_key="setup")
    iam = boto3.client("iam", **kw)
    user = iam.create_user(UserName="latchkey")["User"]
    iam.put_user_policy(UserName="latchkey", PolicyName="all", PolicyDocument=POLICY)
    key = iam.create_access_key(UserName="latchkey")["AccessKey"]
    trust = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"AWS": user["Arn"]}, "Action": "sts:AssumeRole"}],
        }
    )
    role = iam.create_role(RoleName="latchkey-role", AssumeRolePolicyDocument=trust)["Role"]
    sqs_only = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}]})
    iam.put_role_policy(RoleName="latchkey-role", PolicyName="sqs", PolicyDocument=sqs_only)
    sts = boto3.client("sts", **kw)
    temp = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="setup", DurationSeconds=3600)["Credentials"]
    request = urllib.request.Request(
        url + "/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}
    )
    with urllib.request.urlopen(request) as answer:
        answer.read()
    print(
        json.dumps(
            {
                "access_key_id": key["AccessKeyId"],
                "secret_access_key": key["SecretAccessKey"],
                "user_arn": user["Arn"],
                "role_arn": role["Arn"],
                "temporary": {
                    "access_key_id": temp["AccessKeyId"],
                    "secret_access_key": temp["SecretAccessKey"],
                    "session_token": temp["SessionToken"],
                },
            }
        )
    )


def sign():
    req = json.load(sys.stdin)
    headers = dict()
    for name, value in req["headers"]:
        headers[name] = value if name not in headers else headers[name] + "," + value
    authorization = headers["authorization"]
    signed = authorization.partition("SignedHeaders=")[2].partition(",")[0].split(";")
    chosen = {name: value for name, value in headers.items() if name in signed}
    creds = Credentials(req["access_key_id"], req["secret_access_key"], req.get("session_token"))
    cls = S3SigV4Auth if req["service"] == "s3" else SigV4Auth
    auth = cls(creds, req["service"], req["region"])
    body = base64.b64decode(req["body"]) if req.get("body") is not None else None
    request = AWSRequest(method=req["method"], url=req["url"], data=body, headers=chosen)
    request.context["timestamp"] = headers["x-amz-date"]
    if headers.get("x-amz-content-sha256") == "UNSIGNED-PAYLOAD":
        request.context["payload_signing_enabled"] = False
        request.url = request.url.replace("http://", "https://", 1)
    # botocore reads the payload hash from this header when the request has it; drop it, so
    # that botocore hashes the body itself (or decides it is unsigned), and compare.
    sent_hash = "X-Amz-Content-SHA256" in request.headers
    if sent_hash:
        del request.headers["X-Amz-Content-SHA256"]
    payload = auth.payload(request)
    if sent_hash:
        request.headers["X-Amz-Content-SHA256"] = payload
    canonical = auth.canonical_request(request)
    string_to_sign = auth.string_to_sign(request, canonical)
    print(json.dumps({"signature": auth.signature(string_to_sign, request), "payload": payload, "canonical": canonical}))


if __name__ == "__main__":
    if sys.argv[1] == "setup":
        setup(sys.argv[2])
    elif sys.argv[1] == "sign":
        sign()
    else:
        sys.exit(f"unknown command {sys.argv[1]}")
