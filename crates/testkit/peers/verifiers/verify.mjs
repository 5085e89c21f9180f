// Verifies a JWT with jose (npm) against a remote JWKS, independently of Latchkey.
//
// Run by crates/testkit/src/peers/verifiers.rs. Reads one JSON object on stdin:
//
//     {"jwks_url": "...", "token": "...", "issuer": "...", "audience": "...",
//      "algorithms": ["RS256", "ES256", "EdDSA"], "typ": "at+jwt"}   // "typ" is optional
//
// and prints one JSON line on stdout:
//
//     {"ok": true, "claims": {...}, "header": {...}}
//     {"ok": false, "error": "<error class>: <message>"}
//
// Exit status 0 in both cases, 2 on bad input, 3 when jose is not installed.

const REQUIRED_CLAIMS = ['exp', 'iat', 'nbf', 'iss', 'aud', 'sub', 'jti'];

function badInput(message) {
  process.stderr.write(`verify.mjs: bad input: ${message}\n`);
  process.exit(2);
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

function parseInput(text) {
  let data;
  try {
    data = JSON.parse(text);
  } catch (e) {
    badInput(`not JSON: ${e.message}`);
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) badInput('not a JSON object');
  for (const field of ['jwks_url', 'token', 'issuer', 'audience']) {
    if (typeof data[field] !== 'string') badInput(`"${field}" must be a string`);
  }
  const { algorithms } = data;
  if (!Array.isArray(algorithms) || algorithms.length === 0 || !algorithms.every((a) => typeof a === 'string')) {
    badInput('"algorithms" must be a non-empty list of strings');
  }
  if (data.typ !== undefined && data.typ !== null && typeof data.typ !== 'string') {
    badInput('"typ" must be a string when present');
  }
  let url;
  try {
    url = new URL(data.jwks_url);
  } catch (e) {
    badInput(`"jwks_url" is not a URL: ${e.message}`);
  }
  return { ...data, url };
}

let jose;
try {
  jose = await import('jose');
} catch (e) {
  process.stderr.write(`verify.mjs: cannot load jose: ${e.message}\n`);
  process.exit(3);
}

const input = parseInput(await readStdin());
let result;
try {
  const jwks = jose.createRemoteJWKSet(input.url, { timeoutDuration: 10000 });
  const options = {
    issuer: input.issuer,
    audience: input.audience,
    algorithms: input.algorithms,
    requiredClaims: REQUIRED_CLAIMS,
  };
  if (typeof input.typ === 'string') options.typ = input.typ;
  const { payload, protectedHeader } = await jose.jwtVerify(input.token, jwks, options);
  result = { ok: true, claims: payload, header: protectedHeader };
} catch (e) {
  const name = e?.name ?? e?.constructor?.name ?? 'Error';
  result = { ok: false, error: `${name}: ${e?.message ?? String(e)}` };
}
process.stdout.write(`${JSON.stringify(result)}\n`);
