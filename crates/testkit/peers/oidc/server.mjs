// oidc-provider (npm) as a test peer for Latchkey: a real OpenID Connect / OAuth 2.0 server on
// loopback, started by crates/testkit/src/peers/oidc.rs.
//
//   node server.mjs <port> [<access-token-ttl-seconds> [<issuer>]]
//
// Environment (used when the arguments are absent):
//   PORT                    the port
//   OIDC_ACCESS_TOKEN_TTL   access-token lifetime in seconds (default 3600)
//
// - Issuer: http://127.0.0.1:<port>; listens on 127.0.0.1 only.
// - With an https <issuer> (nginx in front, verifying client certificates and passing them
//   on in X-SSL-Client-Cert, -Verify and -S-DN), mTLS is on: clients may register with
//   token_endpoint_auth_method tls_client_auth and tls_client_auth_subject_dn (RFC 8705).
// - Open dynamic client registration (POST /reg): every test registers its own client with its own
//   redirect_uris, grant_types and token_endpoint_auth_method (client_secret_basic,
//   client_secret_post, private_key_jwt with its public keys in `jwks`, or none).
// - devInteractions: the built-in login and consent pages; any login name with any password.
//   The account's claims are sub = <login>, email = <login>@example.com.
// - PKCE (S256) is required for every client using the authorization code flow.
// - A refresh token is issued whenever the client has the refresh_token grant (offline_access and
//   prompt=consent are not needed), and every refresh rotates it. Replaying a used refresh token
//   gives invalid_grant and revokes the whole grant.
// - introspection, revocation, client credentials (scope api:read) and userinfo (/me) are on.

import Provider from 'oidc-provider';

const port = Number.parseInt(process.argv[2] ?? process.env.PORT ?? '', 10);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('usage: node server.mjs <port> [<access-token-ttl-seconds>]   (or set PORT, OIDC_ACCESS_TOKEN_TTL)');
  process.exit(2);
}

const ttlSetting = process.argv[3] ?? process.env.OIDC_ACCESS_TOKEN_TTL ?? '3600';
const accessTokenTtl = Number.parseInt(ttlSetting, 10);
if (!Number.isInteger(accessTokenTtl) || accessTokenTtl <= 0) {
  console.error(`the access-token lifetime must be a positive number of seconds, got ${ttlSetting}`);
  process.exit(2);
}

const issuer = process.argv[4] ?? `http://127.0.0.1:${port}`;
const mtls = issuer.startsWith('https://');

const configuration = {
  // Accounts: whatever login name the devInteractions login form submits.
  async findAccount(_ctx, id) {
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          email: `${id}@example.com`,
          email_verified: true,
          name: id,
          preferred_username: id,
        };
      },
    };
  },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
  },
  scopes: ['openid', 'offline_access', 'api:read'],

  features: {
    devInteractions: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    clientCredentials: { enabled: true },
    userinfo: { enabled: true },
    registration: { enabled: true, initialAccessToken: false },
    rpInitiatedLogout: { enabled: false },
    mTLS: {
      enabled: mtls,
      tlsClientAuth: mtls,
      // Clients registered with tls_client_certificate_bound_access_tokens get tokens whose
      // cnf names the certificate's SHA-256 thumbprint (RFC 8705 §3).
      certificateBoundAccessTokens: mtls,
      // nginx verified the certificate (against its client CA) and says so in headers.
      getCertificate(ctx) {
        const escaped = ctx.get('x-ssl-client-cert');
        return escaped ? decodeURIComponent(escaped) : undefined;
      },
      certificateAuthorized(ctx) {
        return ctx.get('x-ssl-client-verify') === 'SUCCESS';
      },
      certificateSubjectMatches(ctx, property, expected) {
        return property === 'tls_client_auth_subject_dn' && ctx.get('x-ssl-client-s-dn') === expected;
      },
    },
  },
  clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none', ...(mtls ? ['tls_client_auth'] : [])],

  // The default requires PKCE only for public clients; require it for every client.
  pkce: { required: () => true },

  // Refresh tokens whenever the client may use them, rotated on every use, and not tied to the
  // login session (so they keep working however the session goes).
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: () => true,
  expiresWithSession: async () => false,

  ttl: {
    AccessToken: accessTokenTtl,
    ClientCredentials: accessTokenTtl,
    AuthorizationCode: 600,
    IdToken: 3600,
    Interaction: 3600,
    Session: 14 * 24 * 60 * 60,
    Grant: 14 * 24 * 60 * 60,
    RefreshToken: 14 * 24 * 60 * 60,
  },

  // Fixed cookie signing keys: this is a throwaway test server.
  cookies: { keys: ['latchkey-testkit-oidc-cookie-key'] },

  // Let oidc-provider's error responses describe what went wrong.
  renderError(ctx, out, error) {
    ctx.type = 'json';
    ctx.body = out;
    if (error && !error.expose) {
      console.error('render error:', error);
    }
  },
};

const provider = new Provider(issuer, configuration);
// Behind nginx: trust its X-Forwarded-Proto.
provider.proxy = mtls;

provider.on('server_error', (ctx, err) => {
  console.error(`server_error ${ctx.method} ${ctx.path}:`, err);
});
for (const event of [
  'authorization.error',
  'grant.error',
  'introspection.error',
  'revocation.error',
  'registration_create.error',
  'userinfo.error',
  'check_session_origin.error',
]) {
  provider.on(event, (ctx, err) => {
    console.error(`${event} ${ctx.method} ${ctx.path}: ${err.name}: ${err.message}${err.error_description ? ` (${err.error_description})` : ''}`);
  });
}

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
server.on('error', (err) => {
  console.error('listen error:', err);
  process.exit(1);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    process.exit(0);
  });
}
