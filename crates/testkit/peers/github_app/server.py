"""A GitHub App's installation-token endpoint as GitHub documents it, for Latchkey's tests.

POST /app/installations/<id>/access_tokens with `Authorization: Bearer <app JWT>`: the JWT is
verified with PyJWT against the app's public keys (RS256 only; `iss` the app id, `iat` and `exp`
required, `exp` at most 10 minutes ahead, `iat` not in the future), then 201
`{"token": "ghs_...", "expires_at": "<RFC 3339>", "permissions": ..., "repository_selection": "all"}`.
GitHub's refusals: 401 `{"message": ..., "documentation_url": ...}`, 404 for an unknown
installation.

GET /installation/repositories with `Authorization: token <t>` or `Bearer <t>`: 200 with the
installation's repositories for a token it issued that has not expired, else 401
`{"message": "Bad credentials"}`.

Test endpoints: POST /test/installations `{"token_lifetime_s": N}` makes an installation (its
own counters); GET /test/installations/<id> its counters and the claims of each JWT it took;
GET /test/health.
"""

import json
import os
import secrets
import threading
import time
from datetime import datetime, timezone

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, jsonify, request

CONFIG = json.load(open(os.environ["LATCHKEY_GITHUB_APP_CONFIG"]))
APP_ID = str(CONFIG["app_id"])
DOCS = "https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app"

app = Flask(__name__)
lock = threading.Lock()


def new_key(name):
    """An RSA 2048 key whose PKCS#1 PEM (as GitHub hands it out) is written to the scratch dir."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    with open(os.path.join(CONFIG["dir"], name + ".pem"), "wb") as f:
        f.write(pem)
    return key.public_key()


# GitHub lets an app have several keys at once (to rotate); `unregistered` is no key of the app.
KEYS = {"first": new_key("first"), "second": new_key("second")}
new_key("unregistered")

installations = {}  # id -> {"lifetime": s, "tokens": {token: expires}, "jwts": [...], counters}
next_id = [1000]


def refuse(status, message):
    return jsonify({"message": message, "documentation_url": DOCS}), status


def rfc3339(epoch):
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@app.post("/app/installations/<int:iid>/access_tokens")
def access_tokens(iid):
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer "):
        return refuse(401, "A JSON web token could not be decoded")
    token = auth[len("Bearer "):]
    claims, used = None, None
    for name, public in KEYS.items():
        try:
            claims = jwt.decode(
                token, public, algorithms=["RS256"], options={"require": ["iat", "exp", "iss"], "verify_iat": False}
            )
            used = name
            break
        except jwt.InvalidSignatureError:
            continue
        except jwt.ExpiredSignatureError:
            return refuse(401, "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires")
        except jwt.InvalidTokenError as e:
            return refuse(401, "A JSON web token could not be decoded (%s)" % type(e).__name__)
    with lock:
        inst = installations.get(iid)
        if inst is not None:
            inst["requests"] += 1
    if claims is None:
        with lock:
            if inst is not None:
                inst["refused"] += 1
        return refuse(401, "A JSON web token could not be decoded")
    now = time.time()
    problem = None
    if str(claims["iss"]) != APP_ID:
        problem = "Integration not found"
    elif claims["exp"] - now > 600:
        problem = "'Expiration time' claim ('exp') is too far in the future"
    elif claims["iat"] > now + 1:
        problem = "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued"
    if problem is not None:
        with lock:
            if inst is not None:
                inst["refused"] += 1
        return refuse(401, problem)
    if inst is None:
        return refuse(404, "Not Found")
    issued = "ghs_" + secrets.token_urlsafe(27)
    expires = int(now) + inst["lifetime"]
    with lock:
        inst["tokens"][issued] = expires
        inst["jwts"].append({"claims": claims, "key": used, "received_at": now, "jwt": token, "token": issued})
    return jsonify(
        {
            "token": issued,
            "expires_at": rfc3339(expires),
            "permissions": {"contents": "read", "metadata": "read"},
            "repository_selection": "all",
        }
    ), 201


@app.get("/installation/repositories")
def repositories():
    auth = request.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    now = time.time()
    with lock:
        for iid, inst in installations.items():
            expires = inst["tokens"].get(token)
            if scheme.lower() in ("token", "bearer") and expires is not None and now < expires:
                inst["resource_ok"] += 1
                return jsonify(
                    {"total_count": 1, "repositories": [{"full_name": "octo-org/hello", "installation": iid}]}
                )
            if expires is not None:
                inst["resource_refused"] += 1
    return refuse(401, "Bad credentials")


@app.post("/test/installations")
def make_installation():
    spec = request.get_json(force=True)
    with lock:
        next_id[0] += 1
        iid = next_id[0]
        installations[iid] = {
            "lifetime": int(spec.get("token_lifetime_s", 3600)),
            "tokens": {},
            "jwts": [],
            "requests": 0,
            "refused": 0,
            "resource_ok": 0,
            "resource_refused": 0,
        }
    return jsonify({"installation_id": iid})


@app.get("/test/installations/<int:iid>")
def installation_stats(iid):
    with lock:
        inst = installations[iid]
        return jsonify(
            {
                "token_requests": inst["requests"],
                "refused": inst["refused"],
                "issued": len(inst["tokens"]),
                "jwts": inst["jwts"],
                "resource_ok": inst["resource_ok"],
                "resource_refused": inst["resource_refused"],
            }
        )


@app.get("/test/health")
def health():
    return jsonify({"ok": True})
