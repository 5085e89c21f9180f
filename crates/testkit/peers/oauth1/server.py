"""An OAuth 1.0a provider for Latchkey's tests: oauthlib's server side (PyPI `oauthlib`) under
Flask and gunicorn on loopback. Every signature is checked by oauthlib, not by this file.

Config (JSON at $LATCHKEY_OAUTH1_CONFIG):
  consumers: {key: {"secrets": {env: secret}, "rsa": bool}}  (an RSA consumer is checked with
             the public half of the key this server writes to <dir>/rsa_pkcs8.pem); a request's
             environment is its token's; a request token's is the one whose secret verified it
  tokens:    [{"consumer", "token", "secret", "env", "label"}]  two-legged access tokens
  user:      the user the authorize page approves for, without asking
  dir:       where the RSA key is written

Routes:
  ANY  /api/echo            protected resource: 200 {"client_key", "token" (its label, or
                            "user:<name>", "user:<name>@dev"), "signature_method", "signature_type", "params"} or
                            401 {"error": "invalid_request"}; without oauth_token the signature
                            alone is checked (two-legged without a token). `?mark=M` remembers
                            the token that signed it under M. A revoked token is answered 401
                            with its `oauth_problem` (the Problem Reporting extension), in
                            `WWW-Authenticate` or in a form body
  POST /test/revoke         form mark=M, problem=token_revoked|token_rejected|token_expired,
                            where=header|body: revokes the token that signed the last echo
                            marked M (404 when none did)
  POST /oauth/request_token temporary credentials (RFC 5849 §2.1)
  GET  /oauth/authorize     approves at once for `user` and redirects to the callback (§2.2)
  POST /oauth/access_token  token credentials (§2.3)
  GET  /test/health, /test/stats, /test/issued (the secrets of the last three-legged flow)
"""

import json
import os
import re
import secrets
import string
import threading
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, Response, request
from oauthlib.oauth1 import (
    AccessTokenEndpoint,
    AuthorizationEndpoint,
    RequestTokenEndpoint,
    RequestValidator,
    ResourceEndpoint,
    SignatureOnlyEndpoint,
)

with open(os.environ["LATCHKEY_OAUTH1_CONFIG"]) as f:
    CONFIG = json.load(f)

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
with open(os.path.join(CONFIG["dir"], "rsa_pkcs8.pem"), "wb") as f:
    f.write(
        KEY.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
PUBLIC_PEM = KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
).decode()

LOCK = threading.Lock()
# The environment a request without a token is checked in (see `request_token`).
CTX = threading.local()
NONCES = set()
# token -> {"consumer", "secret", "env", "label"}
ACCESS = {t["token"]: dict(t) for t in CONFIG["tokens"]}
# request token -> {"consumer", "secret", "callback", "verifier", "user"}
REQUEST_TOKENS = {}
STATS = {"ok": 0, "refused": 0, "request_token": 0, "access_token": 0}
# The secrets the last three-legged flow was given (for the tests' canary scans).
ISSUED = {}
# mark -> the access token that signed the last echo marked so
MARKS = {}
# revoked access token -> (oauth_problem, "header" or "body")
REVOKED = {}
TOKEN_PARAM = re.compile(r'oauth_token="?([A-Za-z0-9._~%-]+)')

SAFE = set(string.ascii_letters + string.digits + "-_.~")


class Validator(RequestValidator):
    # Loopback http, short test keys, and Latchkey's 32-character nonces.
    enforce_ssl = False
    safe_characters = SAFE
    client_key_length = (3, 64)
    request_token_length = (3, 64)
    access_token_length = (3, 128)
    nonce_length = (8, 64)
    verifier_length = (8, 64)
    realms = []

    dummy_client = "dummy-client"
    dummy_request_token = "dummy-request-token"
    dummy_access_token = "dummy-access-token"

    def _env(self, request):
        token = getattr(request, "resource_owner_key", None)
        if token and token in ACCESS:
            return ACCESS[token]["env"]
        if token and token in REQUEST_TOKENS:
            return REQUEST_TOKENS[token]["env"]
        return getattr(CTX, "env", "live")

    def validate_client_key(self, client_key, request):
        return client_key in CONFIG["consumers"]

    def get_client_secret(self, client_key, request):
        c = CONFIG["consumers"].get(client_key)
        if not c:
            return "dummy-secret"
        return c["secrets"].get(self._env(request), "no-such-secret")

    def get_rsa_key(self, client_key, request):
        return PUBLIC_PEM

    def validate_timestamp_and_nonce(self, client_key, timestamp, nonce, request, request_token=None, access_token=None):
        with LOCK:
            k = (getattr(CTX, "env", "live"), client_key, timestamp, nonce, request_token, access_token)
            if k in NONCES:
                return False
            NONCES.add(k)
            return True

    def get_default_realms(self, client_key, request):
        return []

    def validate_requested_realms(self, client_key, realms, request):
        return True

    def validate_realms(self, client_key, token, request, uri=None, realms=None):
        return True

    def get_realms(self, token, request):
        return []

    def verify_realms(self, token, realms, request):
        return True

    def validate_redirect_uri(self, client_key, redirect_uri, request):
        return redirect_uri.startswith("http://") or redirect_uri.startswith("https://")

    def save_request_token(self, token, request):
        with LOCK:
            STATS["request_token"] += 1
            ISSUED["request_token_secret"] = token["oauth_token_secret"]
            REQUEST_TOKENS[token["oauth_token"]] = {
                "consumer": request.client_key,
                "secret": token["oauth_token_secret"],
                "callback": request.redirect_uri,
                "verifier": None,
                "user": None,
                "env": getattr(CTX, "env", "live"),
            }

    def get_redirect_uri(self, token, request):
        return REQUEST_TOKENS[token]["callback"]

    def verify_request_token(self, token, request):
        return token in REQUEST_TOKENS

    def validate_request_token(self, client_key, token, request):
        t = REQUEST_TOKENS.get(token)
        return bool(t) and t["consumer"] == client_key

    def get_request_token_secret(self, client_key, token, request):
        t = REQUEST_TOKENS.get(token)
        return t["secret"] if t else "dummy-secret"

    def save_verifier(self, token, verifier, request):
        t = REQUEST_TOKENS[token]
        t["verifier"] = verifier["oauth_verifier"]
        t["user"] = verifier.get("user")

    def validate_verifier(self, client_key, token, verifier, request):
        t = REQUEST_TOKENS.get(token)
        ok = bool(t) and t["consumer"] == client_key and t["verifier"] == verifier
        if ok:
            request.user = t["user"]
        return ok

    def invalidate_request_token(self, client_key, request_token, request):
        with LOCK:
            REQUEST_TOKENS.pop(request_token, None)

    def save_access_token(self, token, request):
        with LOCK:
            STATS["access_token"] += 1
            ISSUED["access_token"] = token["oauth_token"]
            ISSUED["access_token_secret"] = token["oauth_token_secret"]
            env = self._env(request)
            ACCESS[token["oauth_token"]] = {
                "consumer": request.client_key,
                "secret": token["oauth_token_secret"],
                "env": env,
                "label": "user:" + str(request.user) + ("" if env == "live" else "@" + env),
            }

    def validate_access_token(self, client_key, token, request):
        t = ACCESS.get(token)
        return bool(t) and t["consumer"] == client_key

    def get_access_token_secret(self, client_key, token, request):
        t = ACCESS.get(token)
        return t["secret"] if t else "dummy-secret"


VALIDATOR = Validator()
RESOURCE = ResourceEndpoint(VALIDATOR)
SIGNATURE_ONLY = SignatureOnlyEndpoint(VALIDATOR)
REQUEST_TOKEN = RequestTokenEndpoint(VALIDATOR)
AUTHORIZE = AuthorizationEndpoint(VALIDATOR)
ACCESS_TOKEN = AccessTokenEndpoint(VALIDATOR)

app = Flask(__name__)


def parts():
    """The request as it came: the raw target (so the base string URI and query are the
    client's), the method, the body text, the headers."""
    target = request.environ.get("RAW_URI") or request.full_path
    uri = request.host_url.rstrip("/") + target
    body = request.get_data(as_text=True)
    return uri, request.method, body or None, dict(request.headers)


def answer(headers, body, status):
    return Response(body or "", status=status, headers=headers)


def signature_type(uri, body, headers):
    """Where the protocol parameters came (oauthlib has refused a request with them in two
    places)."""
    if headers.get("Authorization", "").startswith("OAuth "):
        return "AUTH_HEADER"
    if "oauth_signature=" in uri:
        return "QUERY"
    return "BODY"


def presented_token(uri, body, headers):
    """The oauth_token a request carries, wherever it is."""
    from urllib.parse import unquote

    for text in (headers.get("Authorization", ""), uri, body or ""):
        m = TOKEN_PARAM.search(text)
        if m:
            return unquote(m.group(1))
    return None


def problem_answer(problem, where):
    """A 401 reporting `problem` as the OAuth Problem Reporting extension does."""
    if where == "body":
        return Response(
            "oauth_problem=" + problem + "&oauth_problem_advice=authorize%20the%20application%20again",
            status=401,
            headers={"WWW-Authenticate": 'OAuth realm="latchkey-test"'},
            mimetype="application/x-www-form-urlencoded",
        )
    return Response(
        json.dumps({"error": "invalid_request"}),
        status=401,
        headers={"WWW-Authenticate": 'OAuth realm="latchkey-test", oauth_problem="' + problem + '"'},
        mimetype="application/json",
    )


@app.route("/api/echo", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def echo():
    uri, method, body, headers = parts()
    presented = presented_token(uri, body, headers)
    with LOCK:
        revoked = REVOKED.get(presented)
    if revoked:
        with LOCK:
            STATS["refused"] += 1
        return problem_answer(*revoked)
    has_token = "oauth_token" in (headers.get("Authorization", "") + uri + (body or ""))
    endpoint = RESOURCE if has_token else SIGNATURE_ONLY
    if has_token:
        valid, req = RESOURCE.validate_protected_resource_request(uri, method, body, headers)
    else:
        valid, req = SIGNATURE_ONLY.validate_request(uri, method, body, headers)
    if not valid or req is None:
        with LOCK:
            STATS["refused"] += 1
        return Response(json.dumps({"error": "invalid_request"}), status=401, mimetype="application/json")
    with LOCK:
        STATS["ok"] += 1
    token = req.resource_owner_key
    label = ACCESS[token]["label"] if token else None
    mark = request.args.get("mark")
    if mark and token:
        with LOCK:
            MARKS[mark] = token
    params = [[k, v] for k, v in req.params if not k.startswith("oauth_")]
    out = {
        "client_key": req.client_key,
        "token": label,
        "signature_method": req.signature_method,
        "signature_type": signature_type(uri, body, headers),
        "params": params,
        "method": method,
        "endpoint": type(endpoint).__name__,
    }
    return Response(json.dumps(out), status=200, mimetype="application/json")


@app.route("/oauth/request_token", methods=["POST"])
def request_token():
    # A request without a token has no environment of its own: it is checked with the live
    # consumer secret, then the dev one (the provider's sandbox); the request token, and the
    # access token it becomes, keep the environment whose secret verified it.
    for env in ("live", "dev"):
        CTX.env = env
        try:
            headers, body, status = REQUEST_TOKEN.create_request_token_response(*parts())
        finally:
            CTX.env = "live"
        if status == 200:
            break
    return answer(headers, body, status)


@app.route("/oauth/authorize", methods=["GET"])
def authorize():
    uri, method, body, headers = parts()
    headers_out, body_out, status = AUTHORIZE.create_authorization_response(
        uri, method, body, headers, realms=[], credentials={"user": CONFIG["user"]}
    )
    return answer(headers_out, body_out, status)


@app.route("/oauth/access_token", methods=["POST"])
def access_token():
    return answer(*ACCESS_TOKEN.create_access_token_response(*parts()))


@app.route("/test/revoke", methods=["POST"])
def revoke():
    mark = request.form.get("mark", "")
    problem = request.form.get("problem", "token_revoked")
    where = request.form.get("where", "header")
    with LOCK:
        token = MARKS.pop(mark, None)
        if token is None:
            return Response(json.dumps({"error": "no echo was marked " + mark}), status=404, mimetype="application/json")
        ACCESS.pop(token, None)
        REVOKED[token] = (problem, where)
    return Response(json.dumps({"revoked": True}), mimetype="application/json")


@app.route("/test/health")
def health():
    return "ok"


@app.route("/test/issued")
def issued():
    with LOCK:
        return Response(json.dumps(ISSUED), mimetype="application/json")


@app.route("/test/stats")
def stats():
    with LOCK:
        return Response(json.dumps(STATS), mimetype="application/json")
