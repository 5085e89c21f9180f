"""Mints JWTs with a fresh key, for the self-tests of crates/testkit/src/peers/verifiers.rs only.

Reads one JSON object on stdin:

    {"alg": "RS256" | "ES256" | "EdDSA", "kid": "...",
     "tokens": [{"claims": {...}, "header": {...}}, ...]}   # "header": extra header fields

generates one key pair for "alg", signs every entry of "tokens" with it (header "alg" and
"kid" set from the input unless the entry's "header" overrides them) and prints one JSON line:

    {"jwk": {public JWK with kid, alg, use}, "tokens": ["<compact JWS>", ...]}
"""

import json
import sys

import jwt
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa


def generate(alg):
    if alg == "RS256":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return key, RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    if alg == "ES256":
        key = ec.generate_private_key(ec.SECP256R1())
        return key, ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    if alg == "EdDSA":
        key = ed25519.Ed25519PrivateKey.generate()
        return key, OKPAlgorithm.to_jwk(key.public_key(), as_dict=True)
    raise SystemExit(f"sign.py: unsupported alg {alg!r}")


def main():
    data = json.load(sys.stdin)
    alg, kid = data["alg"], data["kid"]
    key, jwk = generate(alg)
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    tokens = []
    for entry in data["tokens"]:
        headers = {"kid": kid, "typ": "at+jwt", **entry.get("header", {})}
        tokens.append(jwt.encode(entry["claims"], key, algorithm=alg, headers=headers))
    print(json.dumps({"jwk": jwk, "tokens": tokens}), flush=True)


if __name__ == "__main__":
    main()
