#!/usr/bin/env node
// Local OAuth 2.0 authorization server for the engine's conformance tests.
//
// Runs the certified npm package `oidc-provider` (v9) on 127.0.0.1 with exactly one
// confidential client, PKCE (S256) required, refresh-token rotation on, revocation and
// introspection enabled, and the default "devInteractions" login/consent pages (plain
// HTML forms, no JavaScript needed). See README.md for the observed HTTP flow.
//
// Usage:
//   node server.mjs --redirect-uris http://127.0.0.1:4567/callback [options]
//
// Every flag can also be given as an environment variable (flag wins over env):
//
//   flag                      env                          default
//   --port N                  OIDC_PORT                    0 (= pick a free port)
//   --client-id ID            OIDC_CLIENT_ID               studio-test
//   --client-secret SECRET    OIDC_CLIENT_SECRET           studio-secret
//   --redirect-uris A,B       OIDC_REDIRECT_URIS           (required) comma-separated,
//                                                          compared exactly by the server
//   --token-auth-method M     OIDC_TOKEN_AUTH_METHOD       client_secret_basic
//                                                          (or client_secret_post; the
//                                                          client must use exactly this one
//                                                          at /token, /token/revocation and
//                                                          /token/introspection)
//   --lenient-client-auth     OIDC_LENIENT_CLIENT_AUTH=1   off: accept both basic and post
//                                                          whatever the registered method
//                                                          (oidc-provider's own behaviour)
//   --scopes "S1 S2"          OIDC_SCOPES                  "tweet.write users.read
//                                                          post.write profile.read"
//                                                          extra scopes accepted besides
//                                                          `openid offline_access`
//   --access-token-ttl S      OIDC_ACCESS_TOKEN_TTL        60        (seconds)
//   --refresh-token-ttl S     OIDC_REFRESH_TOKEN_TTL       86400     (seconds; each rotated
//                                                          refresh token gets a fresh TTL)
//   --code-ttl S              OIDC_CODE_TTL                60        (authorization code)
//   --interaction-ttl S       OIDC_INTERACTION_TTL         600       (login/consent pages)
//   --session-ttl S           OIDC_SESSION_TTL             86400     (login session cookie)
//   --grant-ttl S             OIDC_GRANT_TTL               max(30 days, refresh-token-ttl)
//   --clock-tolerance S       OIDC_CLOCK_TOLERANCE         0         (oidc-provider's default
//                                                          is 15: expired tokens would keep
//                                                          working for 15 s)
//   --rotate-refresh-token B  OIDC_ROTATE_REFRESH_TOKEN    true      (true|false)
//   --strict-offline-access   OIDC_STRICT_OFFLINE_ACCESS=1 off: by default a GET /auth with
//                                                          `offline_access` in scope and no
//                                                          `prompt` gets `prompt=consent` added,
//                                                          so a plain code flow yields a refresh
//                                                          token; with this flag, OIDC rules:
//                                                          the client must send prompt=consent
//   --log                     OIDC_LOG=1                   off: log "METHOD /path -> status"
//                                                          and provider error events to stderr
//                                                          (no query strings, no bodies, no
//                                                          tokens, no secrets)
//   --ignore-stdin            OIDC_IGNORE_STDIN=1          off: do NOT exit when stdin closes
//                                                          (for manual runs with </dev/null)
//
// Contract with the spawning process:
//   * stdout receives exactly one line, `READY http://127.0.0.1:PORT\n` (the issuer), once
//     the server is listening. Everything else (oidc-provider's warnings, --log output)
//     goes to stderr.
//   * The process exits (code 0) when its stdin reaches EOF / is closed (spawn it with a
//     piped stdin and keep the pipe open while the server is needed; dropping the pipe,
//     e.g. dropping a Rust `Child` with `Stdio::piped()` stdin, or the parent dying, stops
//     it), or on SIGTERM / SIGINT / SIGHUP.
//   * Exit code 2 on bad command-line arguments, 1 if the port cannot be bound (message on
//     stderr); in both cases nothing is written to stdout.
//
// Accounts: any login name is accepted, the password is ignored; `sub` = the login name.
// Extra endpoint: GET /me with `Authorization: Bearer <access token>` answers
//   200 {"sub": "...", "client_id": "...", "scope": "..."} for a valid access token, else
//   401 {"error":"invalid_token",...} with `WWW-Authenticate: Bearer error="invalid_token"`.
//   (oidc-provider's own userinfo endpoint is moved to /userinfo.)

import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';

// oidc-provider prints notices with console.info/console.log (i.e. to stdout). stdout is
// reserved for the single READY line, so send every console output to stderr. This must
// happen before oidc-provider is loaded, hence the dynamic import below.
for (const name of ['log', 'info', 'debug']) {
  console[name] = (...args) => console.error(...args);
}

function fail(message) {
  process.stderr.write(`server.mjs: ${message}\n`);
  process.exit(2);
}

let parsed;
try {
  parsed = parseArgs({
    options: {
      port: { type: 'string' },
      'client-id': { type: 'string' },
      'client-secret': { type: 'string' },
      'redirect-uris': { type: 'string' },
      'token-auth-method': { type: 'string' },
      scopes: { type: 'string' },
      'access-token-ttl': { type: 'string' },
      'refresh-token-ttl': { type: 'string' },
      'code-ttl': { type: 'string' },
      'interaction-ttl': { type: 'string' },
      'session-ttl': { type: 'string' },
      'grant-ttl': { type: 'string' },
      'rotate-refresh-token': { type: 'string' },
      'strict-offline-access': { type: 'boolean' },
      'clock-tolerance': { type: 'string' },
      'lenient-client-auth': { type: 'boolean' },
      log: { type: 'boolean' },
      'ignore-stdin': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  }).values;
} catch (err) {
  fail(err.message);
}

if (parsed.help) {
  process.stderr.write('usage: node server.mjs --redirect-uris URL[,URL...] [--port N] ... (see the top of server.mjs)\n');
  process.exit(0);
}

const env = process.env;
const opt = (flag, envName, dflt) => parsed[flag] ?? env[envName] ?? dflt;
const intOpt = (flag, envName, dflt, min = 1) => {
  const raw = opt(flag, envName, undefined);
  if (raw === undefined) return dflt;
  if (!/^\d+$/.test(String(raw)) || Number(raw) < min) fail(`--${flag} must be an integer >= ${min}, got ${JSON.stringify(raw)}`);
  return Number(raw);
};
const boolOpt = (flag, envName, dflt) => {
  const raw = opt(flag, envName, undefined);
  if (raw === undefined || raw === '') return dflt;
  if (raw === true || /^(1|true|yes|on)$/i.test(raw)) return true;
  if (/^(0|false|no|off)$/i.test(raw)) return false;
  return fail(`--${flag} must be true or false, got ${JSON.stringify(raw)}`);
};

const port = intOpt('port', 'OIDC_PORT', 0, 0);
if (port > 65535) fail('--port must be <= 65535');
const clientId = opt('client-id', 'OIDC_CLIENT_ID', 'studio-test');
const clientSecret = opt('client-secret', 'OIDC_CLIENT_SECRET', 'studio-secret');
const redirectUris = String(opt('redirect-uris', 'OIDC_REDIRECT_URIS', ''))
  .split(',').map((s) => s.trim()).filter(Boolean);
if (!redirectUris.length) fail('--redirect-uris (or OIDC_REDIRECT_URIS) is required');
for (const uri of redirectUris) {
  try { new URL(uri); } catch { fail(`invalid redirect URI ${JSON.stringify(uri)}`); }
}
const tokenAuthMethod = opt('token-auth-method', 'OIDC_TOKEN_AUTH_METHOD', 'client_secret_basic');
if (!['client_secret_basic', 'client_secret_post'].includes(tokenAuthMethod)) {
  fail('--token-auth-method must be client_secret_basic or client_secret_post');
}
const extraScopes = String(opt('scopes', 'OIDC_SCOPES', 'tweet.write users.read post.write profile.read'))
  .split(/[\s,]+/).filter(Boolean);
const accessTokenTTL = intOpt('access-token-ttl', 'OIDC_ACCESS_TOKEN_TTL', 60);
const refreshTokenTTL = intOpt('refresh-token-ttl', 'OIDC_REFRESH_TOKEN_TTL', 24 * 60 * 60);
const codeTTL = intOpt('code-ttl', 'OIDC_CODE_TTL', 60);
const interactionTTL = intOpt('interaction-ttl', 'OIDC_INTERACTION_TTL', 600);
const sessionTTL = intOpt('session-ttl', 'OIDC_SESSION_TTL', 24 * 60 * 60);
const grantTTL = intOpt('grant-ttl', 'OIDC_GRANT_TTL', Math.max(30 * 24 * 60 * 60, refreshTokenTTL));
const rotateRefreshToken = boolOpt('rotate-refresh-token', 'OIDC_ROTATE_REFRESH_TOKEN', true);
const strictOfflineAccess = boolOpt('strict-offline-access', 'OIDC_STRICT_OFFLINE_ACCESS', false);
const clockTolerance = intOpt('clock-tolerance', 'OIDC_CLOCK_TOLERANCE', 0, 0);
const lenientClientAuth = boolOpt('lenient-client-auth', 'OIDC_LENIENT_CLIENT_AUTH', false);
const log = boolOpt('log', 'OIDC_LOG', false);
const ignoreStdin = boolOpt('ignore-stdin', 'OIDC_IGNORE_STDIN', false);

const { default: Provider } = await import('oidc-provider');
const http = await import('node:http');

// Listen first (port 0 => the OS picks one), then build the provider with the real issuer.
const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, '127.0.0.1', resolve);
}).catch((err) => {
  process.stderr.write(`server.mjs: cannot listen on 127.0.0.1:${port}: ${err.code ?? err.message}\n`);
  process.exit(1);
});
const issuer = `http://127.0.0.1:${server.address().port}`;

const configuration = {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: redirectUris,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: tokenAuthMethod,
    // introspection/revocation use the same authentication method as the token endpoint
    // by default (oidc-provider copies token_endpoint_auth_method).
  }],
  // Any login is a valid account; sub = the login name.
  async findAccount(ctx, sub) {
    return {
      accountId: sub,
      async claims() { return { sub }; },
    };
  },
  // openid + offline_access are the OIDC built-ins; the extra scopes are accepted as plain
  // "OIDC" scopes (they end up in the grant and in the token `scope`), no resource server.
  scopes: ['openid', 'offline_access', ...extraScopes],
  claims: { openid: ['sub'] },
  pkce: {
    // PKCE for every authorization request of every client; oidc-provider 9 only
    // implements the S256 method ("plain" is rejected at the authorization endpoint).
    required: () => true,
  },
  // Refresh token whenever `offline_access` was granted (this is also oidc-provider's
  // default). oidc-provider drops `offline_access` from an authorization request that does
  // not carry `prompt=consent`; see "offline_access without prompt=consent" below.
  async issueRefreshToken(ctx, client, code) {
    return client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access');
  },
  rotateRefreshToken,
  clockTolerance,
  ttl: {
    AccessToken: accessTokenTTL,
    AuthorizationCode: codeTTL,
    RefreshToken: refreshTokenTTL,
    IdToken: accessTokenTTL,
    Interaction: interactionTTL,
    Session: sessionTTL,
    Grant: grantTTL,
  },
  cookies: {
    // signed cookies; keys are per-process, which is fine for a throwaway test server
    keys: [randomBytes(32).toString('base64url')],
  },
  features: {
    devInteractions: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
    userinfo: { enabled: true },
    // not needed here; disabled to keep discovery small and behaviour predictable
    rpInitiatedLogout: { enabled: false },
  },
  routes: {
    userinfo: '/userinfo', // oidc-provider's default is /me; /me is ours (see below)
  },
  // Plain JSON error page for browser-facing endpoints (authorize/interaction) so a test
  // client can read the error without parsing HTML.
  async renderError(ctx, out) {
    ctx.type = 'json';
    ctx.body = out;
  },
};

const provider = new Provider(issuer, configuration);

// ---- logging (stderr only, nothing secret) ------------------------------------------------
if (log) {
  provider.use(async (ctx, next) => {
    const started = Date.now();
    try {
      await next();
    } finally {
      // path only: query strings carry codes/state, bodies carry secrets
      process.stderr.write(`[oidc] ${ctx.method} ${ctx.path} -> ${ctx.status} (${Date.now() - started} ms)\n`);
    }
  });
  const events = [
    'authorization.error', 'grant.error', 'introspection.error', 'revocation.error',
    'userinfo.error', 'server_error', 'interaction.error',
  ];
  for (const event of events) {
    provider.on(event, (ctx, err) => {
      const detail = err?.error_detail ?? err?.error_description ?? err?.message;
      process.stderr.write(`[oidc] ${event}: ${err?.name ?? 'Error'}${detail ? `: ${detail}` : ''}\n`);
    });
  }
  provider.on('grant.revoked', (ctx, grantId) => {
    process.stderr.write(`[oidc] grant.revoked (${grantId ? 'a grant' : 'none'})\n`);
  });
} else {
  // Unexpected internal errors are always worth a line.
  provider.on('server_error', (ctx, err) => {
    process.stderr.write(`[oidc] server_error: ${err?.message}\n`);
  });
}

// ---- registered client authentication method is enforced -------------------------------
// oidc-provider 9 treats client_secret_basic and client_secret_post as interchangeable (a
// client registered with either may use both). To make the registered method the only one
// that works (as on servers that do enforce it), a request to a client-authenticating
// endpoint that uses the other mechanism is refused here with the very response
// oidc-provider gives for a failed client authentication. --lenient-client-auth turns this
// off (oidc-provider's own behaviour: both accepted).
if (!lenientClientAuth) {
  const authenticated = new Set(['token', 'revocation', 'introspection', 'pushed_authorization_request']
    .map((route) => new URL(provider.urlFor(route)).pathname));
  const refuse = (ctx) => {
    ctx.status = 401;
    if (ctx.get('authorization')) {
      ctx.set('WWW-Authenticate', `Basic realm="${issuer}", error="invalid_client", error_description="client authentication failed"`);
    }
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { error: 'invalid_client', error_description: 'client authentication failed' };
  };
  provider.use(async (ctx, next) => {
    if (ctx.method !== 'POST' || !authenticated.has(ctx.path)) return next();
    const basicHeader = /^basic\s/i.test(ctx.get('authorization'));
    if (tokenAuthMethod === 'client_secret_post') {
      if (basicHeader) return refuse(ctx);
      return next();
    }
    // client_secret_basic: only a request without an Authorization header can carry the
    // secret in its body; only then is the body read (and handed to oidc-provider parsed).
    if (basicHeader || !ctx.is('application/x-www-form-urlencoded')) return next();
    const chunks = [];
    let size = 0;
    for await (const chunk of ctx.req) {
      size += chunk.length;
      if (size > 56 * 1024) break; // oidc-provider's own limit; it will reject the request
      chunks.push(chunk);
    }
    const raw = Buffer.concat(chunks).toString('utf8');
    if (new URLSearchParams(raw).has('client_secret')) return refuse(ctx);
    ctx.request.body = raw; // oidc-provider falls back to an upstream-parsed body
    return next();
  });
}

// ---- GET /me: a trivial protected resource ------------------------------------------------
function bearerError(ctx, description) {
  ctx.status = 401;
  ctx.set('WWW-Authenticate', 'Bearer error="invalid_token"');
  ctx.set('Cache-Control', 'no-store');
  ctx.body = { error: 'invalid_token', error_description: description };
}

provider.use(async (ctx, next) => {
  if (ctx.path !== '/me') return next();
  if (ctx.method !== 'GET') {
    ctx.status = 405;
    ctx.set('Allow', 'GET');
    ctx.body = { error: 'method_not_allowed' };
    return undefined;
  }
  const match = /^Bearer\s+(\S+)\s*$/i.exec(ctx.get('authorization'));
  if (!match) return bearerError(ctx, 'no bearer access token');
  // AccessToken.find returns undefined for unknown, malformed, expired or revoked tokens.
  const token = await provider.AccessToken.find(match[1]);
  if (!token) return bearerError(ctx, 'access token is invalid, expired or revoked');
  // Belt and braces: revoking a grant deletes its tokens too, but refuse orphans anyway.
  if (token.grantId && !(await provider.Grant.find(token.grantId))) {
    return bearerError(ctx, 'grant revoked');
  }
  ctx.set('Cache-Control', 'no-store');
  ctx.body = { sub: token.accountId, client_id: token.clientId, scope: token.scope };
  return undefined;
});

// ---- offline_access without prompt=consent ------------------------------------------------
// OpenID Connect Core §11 (and oidc-provider, faithfully) ignores `offline_access` unless the
// authorization request also carries `prompt=consent`; without it no refresh token is issued.
// OAuth-2.0-only providers (X/Twitter: `offline.access`, ...) issue refresh tokens for a plain
// request, and that is what the engine sends. Unless --strict-offline-access is given, a GET
// /auth whose `scope` contains `offline_access` and that has NO `prompt` parameter is treated
// as if it carried `prompt=consent` (the consent page is then always shown, even for an
// already logged-in session with an existing grant). A request with some other `prompt`
// value is left alone (offline_access is then dropped, as in OIDC).
const callback = provider.callback();
const authPath = new URL(provider.urlFor('authorization')).pathname;
server.on('request', (req, res) => {
  if (!strictOfflineAccess && req.method === 'GET') {
    const url = new URL(req.url, issuer);
    const scope = url.searchParams.get('scope');
    if (url.pathname === authPath && !url.searchParams.has('prompt') && !url.searchParams.has('request')
      && !url.searchParams.has('request_uri') && scope?.split(' ').includes('offline_access')) {
      url.searchParams.set('prompt', 'consent');
      req.url = `${url.pathname}${url.search}`;
    }
  }
  callback(req, res);
});

// ---- lifecycle -----------------------------------------------------------------------------
let stopping = false;
function stop(reason) {
  if (stopping) return;
  stopping = true;
  if (log) process.stderr.write(`[oidc] stopping (${reason})\n`);
  server.close(() => process.exit(0));
  server.closeAllConnections?.();
  // never hang on keep-alive sockets
  setTimeout(() => process.exit(0), 1000).unref();
}
for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP']) {
  process.on(signal, () => stop(signal));
}
if (!ignoreStdin) {
  process.stdin.on('end', () => stop('stdin closed'));
  process.stdin.on('close', () => stop('stdin closed'));
  process.stdin.on('error', () => stop('stdin error'));
  process.stdin.on('data', () => {}); // discard anything written to us
  process.stdin.resume();
}

process.stdout.write(`READY ${issuer}\n`);
