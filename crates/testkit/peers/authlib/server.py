"""A real OAuth2 authorization server for Latchkey's tests, built on Authlib.

Grants: password (resource owner), client_credentials, refresh_token (rotating: every refresh
issues a new refresh token and revokes the old one, so a reuse answers `invalid_grant`) and
JWT bearer (RFC 7523, Google-style service accounts).

Run under gunicorn with ONE worker (all state is in memory) and several threads:

    LATCHKEY_AUTHLIB_CONFIG=/path/config.json \
    python3 -m gunicorn --chdir <this dir> --workers 1 --threads 16 server:app

The JSON config (written by `crates/testkit/src/peers/authlib.rs`) has the keys of `DEFAULTS`
below; missing keys take the defaults, so the script also runs by hand without any config.
At startup the server writes into `dir`: `jwt_pkcs1.pem`, `jwt_pkcs8.pem`, `jwt_wrong.pem`
(a key the server does not trust) and `service_account.json`.

Test endpoints (not OAuth2):
- `GET  /api/me`          protected resource: Bearer token -> 200 {client_id, user, scope,
                          grant_type} or 401 {"error": "invalid_token"}.
- `GET  /test/health`     200 once the app is loaded and the key files are written.
- `GET  /test/stats`      token requests by grant type and outcome, plus `resource` (calls of
                          /api/me); `?client_id=X` counts only that client's requests.
- `POST /test/reset`      zeroes every counter.
- `POST /test/expire`     form `access_token=...`: that access token is expired from now on.
- `POST /test/clients`    JSON {auth_method, grant_types?, token_delay_ms?, expires_in?}:
                          registers a fresh confidential client -> {client_id, client_secret}.
- `POST /test/sign`       JSON {claims, key: "pkcs8" | "wrong", header?}: an RS256 assertion
                          (for the peer's own self-test).
"""

import base64
import json
import os
import secrets
import threading
import time
from collections import defaultdict
from urllib.parse import unquote

os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from flask import Flask, jsonify, request  # noqa: E402
from joserfc import jwt as jose_jwt  # noqa: E402
from joserfc.jwk import RSAKey  # noqa: E402

from authlib.integrations.flask_oauth2 import AuthorizationServer  # noqa: E402
from authlib.oauth2.rfc6749 import grants  # noqa: E402
from authlib.oauth2.rfc6749.errors import InvalidGrantError  # noqa: E402
from authlib.oauth2.rfc6750 import BearerTokenGenerator  # noqa: E402
from authlib.oauth2.rfc7523 import JWTBearerGrant as _JWTBearerGrant  # noqa: E402

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SECRET_GRANTS = ["password", "client_credentials", "refresh_token"]
STAT_KEYS = SECRET_GRANTS + [JWT_BEARER]

DEFAULTS = {
    "base_url": "http://127.0.0.1:8000",
    "token_path": "/oauth/token",
    "dir": ".",
    "user": "ada",
    "password": "ada-password",
    "expires_in": 3600,
    "clients": [
        {
            "client_id": "basic-client",
            "client_secret": "basic-secret",
            "auth_method": "client_secret_basic",
            "grant_types": SECRET_GRANTS,
        },
        {
            "client_id": "post-client",
            "client_secret": "post-secret",
            "auth_method": "client_secret_post",
            "grant_types": SECRET_GRANTS,
        },
    ],
    "issuer": "svc@latchkey-test.iam.gserviceaccount.com",
    "jwt_client_id": "104857600000000000001",
    "project_id": "latchkey-test",
}


def load_config():
    config = dict(DEFAULTS)
    path = os.environ.get("LATCHKEY_AUTHLIB_CONFIG")
    if path:
        with open(path, encoding="utf-8") as f:
            config.update(json.load(f))
    return config


CONFIG = load_config()
TOKEN_URL = CONFIG["base_url"] + CONFIG["token_path"]
LOCK = threading.RLock()


# ---------------------------------------------------------------------------------------------
# Keys

def pem_pkcs1(key):
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def pem_pkcs8(key):
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def write_file(name, text):
    path = os.path.join(CONFIG["dir"], name)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


JWT_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
WRONG_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
JWT_PKCS8 = pem_pkcs8(JWT_KEY)
WRONG_PKCS8 = pem_pkcs8(WRONG_KEY)
JWT_PUBLIC_PEM = JWT_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
).decode()
PRIVATE_KEY_ID = secrets.token_hex(20)

SERVICE_ACCOUNT = {
    "type": "service_account",
    "project_id": CONFIG["project_id"],
    "private_key_id": PRIVATE_KEY_ID,
    "private_key": JWT_PKCS8,
    "client_email": CONFIG["issuer"],
    "client_id": CONFIG["jwt_client_id"],
    "auth_uri": CONFIG["base_url"] + "/oauth/authorize",
    "token_uri": TOKEN_URL,
    "auth_provider_x509_cert_url": CONFIG["base_url"] + "/oauth/certs",
    "client_x509_cert_url": CONFIG["base_url"] + "/robot/v1/metadata/x509/"
    + CONFIG["issuer"].replace("@", "%40"),
    "universe_domain": "googleapis.com",
}

write_file("jwt_pkcs1.pem", pem_pkcs1(JWT_KEY))
write_file("jwt_pkcs8.pem", JWT_PKCS8)
write_file("jwt_wrong.pem", pem_pkcs1(WRONG_KEY))
write_file("jwt_public.pem", JWT_PUBLIC_PEM)
write_file("service_account.json", json.dumps(SERVICE_ACCOUNT, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------
# In-memory models

class User:
    def __init__(self, username, password):
        self.username = username
        self.password = password

    def get_user_id(self):
        return self.username


class Client:
    def __init__(self, client_id, client_secret, auth_method, grant_types,
                 token_delay_ms=0, expires_in=None, public_key_pem=None):
        self.client_id = client_id
        self.client_secret = client_secret
        self.auth_method = auth_method
        self.grant_types = list(grant_types)
        self.token_delay_ms = int(token_delay_ms or 0)
        self.expires_in = int(expires_in) if expires_in is not None else None
        self.public_key_pem = public_key_pem

    # ClientMixin
    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return None

    def get_allowed_scope(self, scope):
        # Every scope is allowed; no scope means a token without scope.
        return scope or ""

    def check_redirect_uri(self, redirect_uri):
        return False

    def check_client_secret(self, client_secret):
        return self.client_secret is not None and secrets.compare_digest(
            self.client_secret.encode(), client_secret.encode()
        )

    def check_endpoint_auth_method(self, method, endpoint):
        return method == self.auth_method

    def check_response_type(self, response_type):
        return False

    def check_grant_type(self, grant_type):
        return grant_type in self.grant_types


class Token:
    def __init__(self, data, client_id, user, grant_type):
        self.access_token = data["access_token"]
        self.refresh_token = data.get("refresh_token")
        self.scope = data.get("scope", "")
        self.expires_in = int(data.get("expires_in") or 0)
        self.issued_at = time.time()
        self.client_id = client_id
        self.user = user
        self.grant_type = grant_type
        self.access_revoked = False
        self.refresh_revoked = False

    # TokenMixin
    def check_client(self, client):
        return self.client_id == client.get_client_id()

    def get_scope(self):
        return self.scope

    def get_expires_in(self):
        return self.expires_in

    def is_expired(self):
        return self.access_revoked or (
            self.expires_in > 0 and time.time() >= self.issued_at + self.expires_in
        )

    def is_revoked(self):
        return self.access_revoked

    def get_user(self):
        return self.user

    def get_client(self):
        return CLIENTS.get(self.client_id)


USERS = {CONFIG["user"]: User(CONFIG["user"], CONFIG["password"])}
CLIENTS = {}
for c in CONFIG["clients"]:
    CLIENTS[c["client_id"]] = Client(
        c["client_id"], c["client_secret"], c["auth_method"], c.get("grant_types", SECRET_GRANTS),
        c.get("token_delay_ms", 0), c.get("expires_in"),
    )
JWT_CLIENT = Client(
    CONFIG["jwt_client_id"], None, "none", [JWT_BEARER], public_key_pem=JWT_PUBLIC_PEM
)
CLIENTS[JWT_CLIENT.client_id] = JWT_CLIENT
ISSUERS = {CONFIG["issuer"]: JWT_CLIENT}

ACCESS_TOKENS = {}
REFRESH_TOKENS = {}


def query_client(client_id):
    with LOCK:
        return CLIENTS.get(client_id)


def save_token(token_data, req):
    client = req.client
    token = Token(token_data, client.get_client_id(), req.user, req.payload.grant_type)
    with LOCK:
        ACCESS_TOKENS[token.access_token] = token
        if token.refresh_token:
            REFRESH_TOKENS[token.refresh_token] = token


def expires_in_for(client, grant_type):
    if client is not None and getattr(client, "expires_in", None) is not None:
        return client.expires_in
    return int(CONFIG["expires_in"])


# ---------------------------------------------------------------------------------------------
# Grants

SECRET_METHODS = ["client_secret_basic", "client_secret_post"]


class PasswordGrant(grants.ResourceOwnerPasswordCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = SECRET_METHODS

    def authenticate_user(self, username, password):
        user = USERS.get(username)
        if user and secrets.compare_digest(user.password.encode(), password.encode()):
            return user
        return None


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = SECRET_METHODS


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = SECRET_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token):
        with LOCK:
            token = REFRESH_TOKENS.get(refresh_token)
        if token and not token.refresh_revoked:
            return token
        return None

    def validate_token_request(self):
        super().validate_token_request()
        # Claim the refresh token atomically once the request is fully valid, so that two
        # concurrent refreshes with the same token cannot both succeed: the second one gets
        # `invalid_grant`, exactly like a later reuse.
        token = self.request.refresh_token
        with LOCK:
            if token.refresh_revoked:
                raise InvalidGrantError()
            token.refresh_revoked = True

    def authenticate_user(self, refresh_token):
        return refresh_token.user

    def revoke_old_credential(self, refresh_token):
        with LOCK:
            refresh_token.refresh_revoked = True


class JWTBearerGrant(_JWTBearerGrant):
    def process_assertion_claims(self, assertion):
        claims = super().process_assertion_claims(assertion)
        self.request.assertion_claims = claims
        return claims

    def resolve_issuer_client(self, issuer):
        with LOCK:
            return ISSUERS.get(issuer)

    def resolve_client_public_key(self, client):
        return RSAKey.import_key(client.public_key_pem)

    def get_audiences(self):
        return [TOKEN_URL]

    def authenticate_user(self, subject):
        if not subject:
            return None
        return USERS.get(subject)

    def has_granted_permission(self, client, user):
        return True

    def create_token_response(self):
        # The assertion's `scope` claim (Google style) is the token's scope; a `scope` form
        # parameter, if any, takes precedence.
        scope = self.request.payload.scope
        if not scope:
            claim = getattr(self.request, "assertion_claims", {}).get("scope")
            if isinstance(claim, str):
                scope = claim
        token = self.generate_token(scope=scope, user=self.request.user, include_refresh_token=False)
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER


# ---------------------------------------------------------------------------------------------
# App

app = Flask(__name__)
server = AuthorizationServer(app, query_client=query_client, save_token=save_token)
server.register_token_generator(
    "default",
    BearerTokenGenerator(
        lambda **_: secrets.token_urlsafe(32),
        lambda **_: secrets.token_urlsafe(36),
        expires_in_for,
    ),
)
server.register_grant(PasswordGrant)
server.register_grant(ClientCredentialsGrant)
server.register_grant(RefreshTokenGrant)
server.register_grant(JWTBearerGrant)


def new_stats():
    return {key: {"ok": 0, "error": 0} for key in STAT_KEYS + ["resource"]}


STATS = new_stats()
CLIENT_STATS = defaultdict(new_stats)


def count(key, ok, client_id):
    outcome = "ok" if ok else "error"
    with LOCK:
        for table in (STATS, CLIENT_STATS[client_id] if client_id else None):
            if table is None:
                continue
            table.setdefault(key, {"ok": 0, "error": 0})[outcome] += 1


def requesting_client_id():
    """The client a token request claims to be, whether or not it authenticates."""
    auth = request.headers.get("Authorization", "")
    if auth[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(auth[6:].strip()).decode()
            return unquote(decoded.split(":", 1)[0])
        except Exception:  # noqa: BLE001
            return None
    if request.form.get("client_id"):
        return request.form["client_id"]
    assertion = request.form.get("assertion")
    if assertion:
        try:
            payload = assertion.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            client = ISSUERS.get(claims.get("iss"))
            return client.client_id if client else None
        except Exception:  # noqa: BLE001
            return None
    return None


@app.route(CONFIG["token_path"], methods=["POST"])
def issue_token():
    client_id = requesting_client_id()
    client = query_client(client_id) if client_id else None
    if client is not None and client.token_delay_ms:
        time.sleep(client.token_delay_ms / 1000.0)
    response = server.create_token_response()
    grant_type = request.values.get("grant_type") or "(none)"
    count(grant_type, response.status_code == 200, client_id)
    return response


@app.route("/api/me", methods=["GET"])
def api_me():
    auth = request.headers.get("Authorization", "")
    value = auth[7:].strip() if auth[:7].lower() == "bearer " else None
    with LOCK:
        token = ACCESS_TOKENS.get(value) if value else None
        valid = token is not None and not token.is_expired()
    if not valid:
        count("resource", False, token.client_id if token else None)
        response = jsonify({"error": "invalid_token"})
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return response
    count("resource", True, token.client_id)
    return jsonify({
        "client_id": token.client_id,
        "user": token.user.username if token.user else None,
        "scope": token.scope,
        "grant_type": token.grant_type,
    })


@app.route("/test/health", methods=["GET"])
def health():
    return jsonify({"ok": True, "token_url": TOKEN_URL})


@app.route("/test/stats", methods=["GET"])
def stats():
    client_id = request.args.get("client_id")
    with LOCK:
        data = CLIENT_STATS[client_id] if client_id else STATS
        return jsonify(json.loads(json.dumps(data)))


@app.route("/test/reset", methods=["POST"])
def reset():
    global STATS
    with LOCK:
        STATS = new_stats()
        CLIENT_STATS.clear()
    return jsonify({"ok": True})


@app.route("/test/expire", methods=["POST"])
def expire():
    value = request.form.get("access_token", "")
    with LOCK:
        token = ACCESS_TOKENS.get(value)
        if token is None:
            return jsonify({"error": "unknown access token"}), 404
        token.access_revoked = True
    return jsonify({"ok": True})


@app.route("/test/clients", methods=["POST"])
def register_client():
    spec = request.get_json(force=True) or {}
    auth_method = spec.get("auth_method", "client_secret_basic")
    if auth_method not in SECRET_METHODS:
        return jsonify({"error": f"unsupported auth_method {auth_method!r}"}), 400
    client = Client(
        spec.get("client_id") or "client-" + secrets.token_hex(8),
        spec.get("client_secret") or secrets.token_urlsafe(24),
        auth_method,
        spec.get("grant_types") or SECRET_GRANTS,
        spec.get("token_delay_ms", 0),
        spec.get("expires_in"),
    )
    with LOCK:
        if client.client_id in CLIENTS:
            return jsonify({"error": f"client {client.client_id!r} exists"}), 409
        CLIENTS[client.client_id] = client
    return jsonify({"client_id": client.client_id, "client_secret": client.client_secret})


@app.route("/test/sign", methods=["POST"])
def sign():
    spec = request.get_json(force=True) or {}
    key_pem = {"pkcs8": JWT_PKCS8, "wrong": WRONG_PKCS8}.get(spec.get("key", "pkcs8"))
    if key_pem is None:
        return jsonify({"error": "key must be 'pkcs8' or 'wrong'"}), 400
    header = {"alg": "RS256", "typ": "JWT", "kid": PRIVATE_KEY_ID}
    header.update(spec.get("header") or {})
    claims = spec.get("claims") or {}
    try:
        assertion = jose_jwt.encode(
            header, claims, RSAKey.import_key(key_pem), algorithms=[header["alg"]]
        )
    except Exception as e:  # noqa: BLE001
        return jsonify({"error": f"cannot sign: {e}"}), 400
    return jsonify({"assertion": assertion})
