"""Verifies a JWT with PyJWT against a remote JWKS, independently of Latchkey.

Run by crates/testkit/src/peers/verifiers.rs. Reads one JSON object on stdin:

    {"jwks_url": "...", "token": "...", "issuer": "...", "audience": "...",
     "algorithms": ["RS256", "ES256", "EdDSA"], "typ": "at+jwt"}   # "typ" is optional

and prints one JSON line on stdout:

    {"ok": true, "claims": {...}, "header": {...}}
    {"ok": false, "error": "<exception class>: <message>"}

Exit status 0 in both cases, 2 on bad input, 3 when PyJWT 2.15.1 or cryptography is missing.
"""

import json
import sys

try:
    import jwt
    import cryptography  # noqa: F401  (PyJWT needs it for RS256, ES256 and EdDSA)
except ImportError as e:
    print(f"verify.py: {e}", file=sys.stderr)
    sys.exit(3)

# The version the tests (and their expected error messages) are written against; keep in step
# with PYJWT_VERSION in crates/testkit/src/peers/verifiers.rs and scripts/install-test-peers.
PYJWT_VERSION = "2.15.1"
if jwt.__version__ != PYJWT_VERSION:
    print(f"verify.py: found PyJWT {jwt.__version__} at {jwt.__file__}, want {PYJWT_VERSION}", file=sys.stderr)
    sys.exit(3)

REQUIRED_CLAIMS = ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]


def bad_input(message):
    print(f"verify.py: bad input: {message}", file=sys.stderr)
    sys.exit(2)


def read_input():
    try:
        data = json.load(sys.stdin)
    except ValueError as e:
        bad_input(f"not JSON: {e}")
    if not isinstance(data, dict):
        bad_input("not a JSON object")
    for field in ("jwks_url", "token", "issuer", "audience"):
        if not isinstance(data.get(field), str):
            bad_input(f'"{field}" must be a string')
    algorithms = data.get("algorithms")
    if not isinstance(algorithms, list) or not algorithms or not all(isinstance(a, str) for a in algorithms):
        bad_input('"algorithms" must be a non-empty list of strings')
    typ = data.get("typ")
    if typ is not None and not isinstance(typ, str):
        bad_input('"typ" must be a string when present')
    return data


def normalize_typ(value):
    # RFC 7515 section 4.1.9: "application/" may be left off, and media types are case-insensitive.
    value = value.lower()
    return value[len("application/"):] if value.startswith("application/") else value


def verify(data):
    client = jwt.PyJWKClient(data["jwks_url"], timeout=10)
    signing_key = client.get_signing_key_from_jwt(data["token"])
    decoded = jwt.decode_complete(
        data["token"],
        key=signing_key,
        algorithms=data["algorithms"],
        issuer=data["issuer"],
        audience=data["audience"],
        options={"require": REQUIRED_CLAIMS},
    )
    header = decoded["header"]
    typ = data.get("typ")
    if typ is not None:
        got = header.get("typ")
        # PyJWT has no option for this check (jose has): done here the way jose does it.
        if not isinstance(got, str) or normalize_typ(got) != normalize_typ(typ):
            raise jwt.InvalidTokenError(f'Invalid "typ" header: expected "{typ}", got {json.dumps(got)}')
    return {"ok": True, "claims": decoded["payload"], "header": header}


def main():
    data = read_input()
    try:
        result = verify(data)
    except Exception as e:  # noqa: BLE001  (every refusal is reported, whatever raised it)
        result = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
