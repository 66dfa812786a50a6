#!/usr/bin/env node
// Self-check for server.mjs: starts it, drives the whole OAuth 2.0 flow over plain HTTP
// (Node's fetch, redirects handled by hand, a minimal cookie jar), prints every step and
// exits non-zero on the first mismatch.
//
//   node drive.mjs            # normal run
//   node drive.mjs --verbose  # also print response headers/bodies (tokens abbreviated)
//
// It starts server.mjs three times:
//   A. defaults (client_secret_basic): full flow, rotation + reuse detection, revocation,
//      bad client secret, PKCE / code-replay negatives, SSO re-authorization;
//   B. --access-token-ttl 1 --refresh-token-ttl 2: expiry of access and refresh tokens;
//   C. --token-auth-method client_secret_post: secret in the form body.

import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const HERE = dirname(fileURLToPath(import.meta.url));
const VERBOSE = process.argv.includes('--verbose');
const CLIENT_ID = 'studio-test';
const CLIENT_SECRET = 'studio-secret';
const REDIRECT_URI = 'http://127.0.0.1:45999/callback'; // never contacted: redirects are not followed
const SCOPE = 'openid offline_access tweet.write users.read';

let stepNo = 0;
let checks = 0;
const servers = [];

// ---------------------------------------------------------------------------------------
// tiny helpers

class Mismatch extends Error {}

function step(title) {
  stepNo += 1;
  console.log(`\n[${String(stepNo).padStart(2, '0')}] ${title}`);
}
function note(msg) { console.log(`     ${msg}`); }
function expect(cond, what, got) {
  checks += 1;
  if (!cond) throw new Mismatch(`${what}${got !== undefined ? ` (got ${typeof got === 'string' ? got : JSON.stringify(got)})` : ''}`);
  note(`ok: ${what}`);
}
const short = (t) => (typeof t === 'string' && t.length > 14 ? `${t.slice(0, 8)}…(${t.length})` : t);
const b64url = (buf) => Buffer.from(buf).toString('base64url');
const basic = (id, secret) => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;

function pkce() {
  const verifier = b64url(randomBytes(32)); // 43 chars
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  return { verifier, challenge };
}

// Minimal RFC 6265 jar: name+path keyed, path-prefix matching, Max-Age/Expires deletion.
class CookieJar {
  constructor() { this.cookies = new Map(); }

  store(url, res) {
    const setCookies = res.headers.getSetCookie();
    const seen = [];
    for (const line of setCookies) {
      const [pair, ...attrs] = line.split(';').map((s) => s.trim());
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      let path = '/';
      let expired = value === '';
      for (const attr of attrs) {
        const [k, v = ''] = attr.split('=');
        const key = k.toLowerCase();
        if (key === 'path') path = v;
        if (key === 'max-age' && Number(v) <= 0) expired = true;
        if (key === 'expires' && Date.parse(v) <= Date.now()) expired = true;
      }
      const id = `${name}\u0000${path}`;
      if (expired) this.cookies.delete(id);
      else this.cookies.set(id, { name, value, path });
      seen.push(`${name}${expired ? ' (deleted)' : ''} path=${path}`);
    }
    return seen;
  }

  header(url) {
    const { pathname } = new URL(url);
    const matching = [...this.cookies.values()].filter(({ path }) => (
      pathname === path || pathname.startsWith(path.endsWith('/') ? path : `${path}/`)
    ));
    // longer paths first, as browsers do
    matching.sort((a, b) => b.path.length - a.path.length);
    return matching.map(({ name, value }) => `${name}=${value}`).join('; ');
  }
}

async function http(method, url, { jar, headers = {}, form } = {}) {
  const h = { ...headers };
  const cookie = jar?.header(url);
  if (cookie) h.cookie = cookie;
  let body;
  if (form) {
    h['content-type'] = 'application/x-www-form-urlencoded';
    body = new URLSearchParams(form).toString();
  }
  const res = await fetch(url, { method, headers: h, body, redirect: 'manual' });
  const text = await res.text();
  const setCookies = jar ? jar.store(url, res) : res.headers.getSetCookie().map((c) => c.split('=')[0]);
  const location = res.headers.get('location');
  let json;
  if ((res.headers.get('content-type') || '').includes('json') && text) {
    try { json = JSON.parse(text); } catch { /* not json */ }
  }
  const u = new URL(url);
  note(`${method} ${u.pathname}${u.search ? '?…' : ''}${cookie ? `  [cookies: ${cookie.split('; ').map((c) => c.split('=')[0]).join(', ')}]` : ''}`
    + `  -> ${res.status}${location ? `  Location: ${location.replace(/([?&](code|state)=)[^&]+/g, '$1…')}` : ''}`);
  if (setCookies.length) note(`   Set-Cookie: ${setCookies.join('; ')}`);
  if (VERBOSE) {
    note(`   content-type: ${res.headers.get('content-type')}  cache-control: ${res.headers.get('cache-control')}`);
    const www = res.headers.get('www-authenticate');
    if (www) note(`   www-authenticate: ${www}`);
    if (json) note(`   body: ${JSON.stringify(Object.fromEntries(Object.entries(json).map(([k, v]) => [k, short(v)])))}`);
    else if (text && !text.startsWith('<')) note(`   body: ${text.slice(0, 200)}`);
  }
  return { status: res.status, headers: res.headers, text, json, location };
}

function formOf(html) {
  const action = /<form[^>]*action="([^"]+)"[^>]*method="post"/i.exec(html)?.[1];
  const inputs = [...html.matchAll(/<input([^>]*)>/gi)].map(([, attrs]) => ({
    name: /name="([^"]+)"/.exec(attrs)?.[1],
    type: /type="([^"]+)"/.exec(attrs)?.[1],
    value: /value="([^"]*)"/.exec(attrs)?.[1],
  })).filter((i) => i.name);
  return { action: action?.replace(/&amp;/g, '&'), inputs };
}

// ---------------------------------------------------------------------------------------
// server process

async function startServer(extraArgs = []) {
  const args = [join(HERE, 'server.mjs'), '--port', '0', '--redirect-uris', REDIRECT_URI, ...extraArgs];
  const child = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  const stderr = [];
  child.stderr.on('data', (d) => stderr.push(d));
  servers.push({ child, stderr });
  const rl = createInterface({ input: child.stdout });
  const firstLine = await Promise.race([
    once(rl, 'line').then(([l]) => l),
    once(child, 'exit').then(([code]) => { throw new Mismatch(`server exited early with ${code}: ${Buffer.concat(stderr)}`); }),
    new Promise((_, rej) => setTimeout(() => rej(new Mismatch('server did not print READY within 10 s')), 10_000).unref()),
  ]);
  const extraStdout = [];
  rl.on('line', (l) => extraStdout.push(l));
  const m = /^READY (http:\/\/127\.0\.0\.1:(\d+))$/.exec(firstLine);
  expect(m, `server printed "READY http://127.0.0.1:PORT" ("${firstLine}")`);
  return { child, issuer: m[1], stderr, extraStdout };
}

async function stopViaStdin(server) {
  const t0 = Date.now();
  server.child.stdin.end();
  const [code, signal] = await Promise.race([
    once(server.child, 'exit'),
    new Promise((_, rej) => setTimeout(() => rej(new Mismatch('server still running 3 s after stdin closed')), 3000).unref()),
  ]);
  expect(code === 0, `server exited with code 0 ${Date.now() - t0} ms after its stdin was closed`, { code, signal });
  expect(server.extraStdout.length === 0, 'nothing but the READY line was written to stdout', server.extraStdout);
}

// ---------------------------------------------------------------------------------------
// flows

// Drives GET /auth -> (login page -> POST -> resume) -> (consent page -> POST -> resume) ->
// redirect_uri, submitting whatever page oidc-provider shows. `expectPrompts` is the list of
// pages that must be shown, in order. Returns { code, state, verifier, jar, params }.
async function authorize(issuer, {
  jar = new CookieJar(), login = 'alice', scope = SCOPE, extra = {},
  expectPrompts = ['login', 'consent'], quiet = false,
} = {}) {
  const { verifier, challenge } = pkce();
  const state = b64url(randomBytes(16));
  const authUrl = new URL('/auth', issuer);
  authUrl.search = new URLSearchParams({
    response_type: 'code',
    client_id: CLIENT_ID,
    redirect_uri: REDIRECT_URI,
    scope,
    state,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    ...extra,
  }).toString();

  let res = await http('GET', authUrl.href, { jar });
  expect(res.status === 303, 'GET /auth answers 303', res.status);
  let next = new URL(res.location, issuer);
  const prompts = [];

  while (next.origin === issuer) {
    expect(/^\/interaction\/[^/]+$/.test(next.pathname), 'redirected to /interaction/{uid}', res.location);
    const uid = next.pathname.split('/')[2];

    res = await http('GET', next.href, { jar });
    expect(res.status === 200 && /text\/html/.test(res.headers.get('content-type')), 'interaction page is 200 text/html', res.status);
    const form = formOf(res.text);
    const prompt = form.inputs.find((i) => i.name === 'prompt')?.value;
    prompts.push(prompt);
    if (!quiet) note(`   ${prompt} form: POST ${form.action}  fields: ${form.inputs.map((i) => `${i.name}${i.value ? `=${i.value}` : ''} (${i.type})`).join(', ')}`);
    expect(form.action === `${issuer}/interaction/${uid}`, `${prompt} form posts to {issuer}/interaction/{uid}`, form.action);
    expect(prompts.length <= expectPrompts.length && prompt === expectPrompts[prompts.length - 1], `page ${prompts.length} is the "${expectPrompts[prompts.length - 1]}" page`, prompt);

    const body = prompt === 'login' ? { prompt, login, password: 'anything' } : { prompt };
    res = await http('POST', form.action, { jar, form: body });
    expect(res.status === 303, `${prompt} POST answers 303`, `${res.status} ${res.text.slice(0, 200)}`);
    next = new URL(res.location, issuer);
    expect(next.href === `${issuer}/auth/${uid}`, `redirected to {issuer}/auth/{same uid} (resume)`, res.location);

    res = await http('GET', next.href, { jar });
    expect(res.status === 303, 'resume GET /auth/{uid} answers 303', res.status);
    next = new URL(res.location, issuer);
  }
  expect(prompts.join(',') === expectPrompts.join(','), `pages shown: [${expectPrompts.join(', ')}]`, prompts);

  const cb = new URL(REDIRECT_URI);
  expect(`${next.origin}${next.pathname}` === `${cb.origin}${cb.pathname}`, 'final redirect goes to the redirect_uri', next.origin + next.pathname);
  if (!quiet) note(`   callback query parameters: ${[...next.searchParams.keys()].join(', ')}`);
  expect(next.searchParams.get('state') === state, 'state passed through unchanged');
  expect(next.searchParams.get('iss') === issuer, 'iss parameter equals the issuer (RFC 9207)', next.searchParams.get('iss'));
  const code = next.searchParams.get('code');
  expect(code && !next.searchParams.has('error'), 'code present, no error', Object.fromEntries(next.searchParams));
  return { code, state, verifier, jar };
}

function tokenRequest(issuer, params, { auth = 'basic', secret = CLIENT_SECRET } = {}) {
  const headers = { accept: 'application/json' };
  const form = { ...params };
  if (auth === 'basic') headers.authorization = basic(CLIENT_ID, secret);
  if (auth === 'post') Object.assign(form, { client_id: CLIENT_ID, client_secret: secret });
  return http('POST', `${issuer}/token`, { headers, form });
}

async function exchange(issuer, { code, verifier }, opts = {}) {
  const res = await tokenRequest(issuer, {
    grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, code_verifier: verifier,
  }, opts);
  expect(res.status === 200, 'token endpoint answers 200', res.text);
  const t = res.json;
  note(`   token response fields: ${Object.keys(t).sort().join(', ')}; token_type=${t.token_type} expires_in=${t.expires_in} scope="${t.scope}"`);
  expect(t.token_type === 'Bearer', 'token_type is Bearer');
  if (opts.noRefresh) {
    expect(typeof t.access_token === 'string' && t.refresh_token === undefined, 'access_token present, NO refresh_token');
  } else {
    expect(typeof t.access_token === 'string' && typeof t.refresh_token === 'string', 'access_token and refresh_token present');
  }
  return t;
}

function refresh(issuer, refreshToken, opts) {
  return tokenRequest(issuer, { grant_type: 'refresh_token', refresh_token: refreshToken }, opts);
}

function expectOAuthError(res, status, error, what) {
  expect(res.status === status && res.json?.error === error, `${what}: ${status} ${error}`, `${res.status} ${res.text}`);
  note(`   body: ${res.text}`);
}

const me = (issuer, at) => http('GET', `${issuer}/me`, { headers: at ? { authorization: `Bearer ${at}` } : {} });
const introspect = (issuer, token, hint) => http('POST', `${issuer}/token/introspection`, {
  headers: { authorization: basic(CLIENT_ID, CLIENT_SECRET), accept: 'application/json' },
  form: { token, ...(hint ? { token_type_hint: hint } : {}) },
});
const revoke = (issuer, token, hint) => http('POST', `${issuer}/token/revocation`, {
  headers: { authorization: basic(CLIENT_ID, CLIENT_SECRET) },
  form: { token, ...(hint ? { token_type_hint: hint } : {}) },
});

// ---------------------------------------------------------------------------------------

async function main() {
  step('A: start server.mjs (defaults, client_secret_basic)');
  const A = await startServer();
  const iss = A.issuer;

  step('A: discovery document');
  let res = await http('GET', `${iss}/.well-known/openid-configuration`);
  expect(res.status === 200, 'discovery 200');
  for (const [k, v] of Object.entries({
    issuer: iss,
    authorization_endpoint: `${iss}/auth`,
    token_endpoint: `${iss}/token`,
    revocation_endpoint: `${iss}/token/revocation`,
    introspection_endpoint: `${iss}/token/introspection`,
  })) expect(res.json[k] === v, `${k} = ${v}`, res.json[k]);
  expect(JSON.stringify(res.json.code_challenge_methods_supported) === '["S256"]', 'code_challenge_methods_supported = ["S256"]');

  step('A: authorization code flow (PKCE S256 + state) through the dev login/consent pages');
  const flow1 = await authorize(iss);

  step('A: exchange code (client_secret_basic)');
  const t1 = await exchange(iss, flow1);
  expect(t1.expires_in === 60, 'expires_in = 60 (default access-token TTL)', t1.expires_in);
  expect(t1.scope === SCOPE, `scope = "${SCOPE}" (offline_access kept without prompt=consent)`, t1.scope);
  expect(typeof t1.id_token === 'string', 'id_token present (openid scope)');
  const idPayload = JSON.parse(Buffer.from(t1.id_token.split('.')[1], 'base64url'));
  expect(idPayload.sub === 'alice' && idPayload.aud === CLIENT_ID && idPayload.iss === iss, 'id_token sub=alice aud=client iss=issuer', idPayload);

  step('A: replaying the same code fails');
  res = await tokenRequest(iss, { grant_type: 'authorization_code', code: flow1.code, redirect_uri: REDIRECT_URI, code_verifier: flow1.verifier });
  expectOAuthError(res, 400, 'invalid_grant', 'code replay');

  step('A: GET /me with the access token');
  res = await me(iss, t1.access_token);
  // Note: oidc-provider revokes the grant's tokens on code replay (RFC 6749 §4.1.2 SHOULD),
  // so the first access token is gone after the replay above.
  expect(res.status === 401, 'after a code replay, tokens issued from that code are revoked: /me 401', res.status);
  expect(res.headers.get('www-authenticate') === 'Bearer error="invalid_token"', 'WWW-Authenticate: Bearer error="invalid_token"', res.headers.get('www-authenticate'));
  res = await refresh(iss, t1.refresh_token);
  expectOAuthError(res, 400, 'invalid_grant', 'refresh token from a replayed code');

  step('A: a new flow with a fresh cookie jar, exchange, call /me, introspect');
  const flow2 = await authorize(iss, { login: 'bob', quiet: true });
  const t2 = await exchange(iss, flow2);
  res = await me(iss, t2.access_token);
  expect(res.status === 200 && res.json.sub === 'bob', '/me 200 {"sub":"bob",...}', res.text);
  note(`   body: ${res.text}`);
  res = await me(iss, undefined);
  expect(res.status === 401 && res.headers.get('www-authenticate') === 'Bearer error="invalid_token"', '/me without token: 401 + Bearer error="invalid_token"', res.status);
  res = await introspect(iss, t2.access_token);
  expect(res.status === 200 && res.json.active === true && res.json.sub === 'bob', 'introspection: active=true sub=bob', res.json);
  note(`   introspection fields: ${Object.keys(res.json).sort().join(', ')}`);
  res = await introspect(iss, t2.refresh_token, 'refresh_token');
  expect(res.status === 200 && res.json.active === true && res.json.sub === 'bob', 'introspection of the refresh token: active=true (no token_type member)', res.json);
  note(`   introspection fields: ${Object.keys(res.json).sort().join(', ')}`);

  step('A: same cookie jar (logged-in session), authorize again -> only the consent page');
  await authorize(iss, { jar: flow2.jar, expectPrompts: ['consent'], quiet: true });
  note('   (this code is not exchanged)');
  step('A: same cookie jar, scope without offline_access -> no page at all, no refresh token');
  const flow3 = await authorize(iss, { jar: flow2.jar, scope: 'openid tweet.write', expectPrompts: [], quiet: true });
  const t3a = await exchange(iss, flow3, { noRefresh: true });
  expect(t3a.scope === 'openid tweet.write', 'scope = "openid tweet.write"', t3a.scope);

  step('A: refresh with RT1 -> rotation');
  res = await refresh(iss, t2.refresh_token);
  expect(res.status === 200, 'refresh answers 200', res.text);
  const t3 = res.json;
  note(`   refresh response fields: ${Object.keys(t3).sort().join(', ')}; scope="${t3.scope}"`);
  expect(t3.refresh_token && t3.refresh_token !== t2.refresh_token, 'new refresh token differs from the old one (rotated)');
  expect(t3.access_token !== t2.access_token, 'new access token');
  res = await me(iss, t2.access_token);
  expect(res.status === 200, 'old access token still valid after a normal refresh', res.status);

  step('A: reuse the rotated (old) refresh token RT1 -> invalid_grant, grant revoked');
  res = await refresh(iss, t2.refresh_token);
  expectOAuthError(res, 400, 'invalid_grant', 'reuse of rotated refresh token');

  step('A: the NEW refresh token RT2 fails too (whole grant revoked)');
  res = await refresh(iss, t3.refresh_token);
  expectOAuthError(res, 400, 'invalid_grant', 'refresh with RT2 after reuse detection');
  res = await me(iss, t3.access_token);
  expect(res.status === 401, 'access tokens of the revoked grant are dead: /me 401', res.status);
  res = await introspect(iss, t3.access_token);
  expect(res.status === 200 && res.json.active === false, 'introspection: {"active":false}', res.text);

  step('A: fresh flow, then revoke its refresh token (RFC 7009)');
  const flow4 = await authorize(iss, { login: 'carol', quiet: true });
  const t4 = await exchange(iss, flow4);
  res = await revoke(iss, t4.refresh_token, 'refresh_token');
  expect(res.status === 200 && res.text === '', 'revocation answers 200 with an empty body', `${res.status} ${JSON.stringify(res.text)}`);
  res = await refresh(iss, t4.refresh_token);
  expectOAuthError(res, 400, 'invalid_grant', 'refresh after revocation');
  res = await me(iss, t4.access_token);
  expect(res.status === 401, 'revoking the refresh token also killed the grant\'s access token: /me 401', res.status);
  res = await revoke(iss, 'no-such-token');
  expect(res.status === 200 && res.text === '', 'revoking an unknown token: 200, empty body', res.status);

  step('A: revoke just an access token');
  const flow5 = await authorize(iss, { login: 'dave', quiet: true });
  const t5 = await exchange(iss, flow5);
  res = await revoke(iss, t5.access_token, 'access_token');
  expect(res.status === 200, 'revocation 200');
  res = await me(iss, t5.access_token);
  expect(res.status === 401, 'revoked access token: /me 401', res.status);
  res = await refresh(iss, t5.refresh_token);
  expectOAuthError(res, 400, 'invalid_grant', 'oidc-provider revokes every token of the grant, even on access-token revocation: refresh');

  step('A: wrong client secret');
  const flow6a = await authorize(iss, { login: 'frank', quiet: true });
  const t6a = await exchange(iss, flow6a);
  res = await refresh(iss, t6a.refresh_token, { secret: 'wrong-secret' });
  expectOAuthError(res, 401, 'invalid_client', 'wrong secret');
  note(`   WWW-Authenticate: ${res.headers.get('www-authenticate')}`);
  res = await tokenRequest(iss, { grant_type: 'refresh_token', refresh_token: 'x' }, { auth: 'none' });
  expectOAuthError(res, 400, 'invalid_request', 'no client authentication at all');
  res = await tokenRequest(iss, { grant_type: 'refresh_token', refresh_token: 'x' }, { auth: 'post' });
  expectOAuthError(res, 401, 'invalid_client', 'client_secret_post for a client_secret_basic client');
  res = await refresh(iss, t6a.refresh_token);
  expect(res.status === 200, 'failed client authentication did not hurt the grant: refresh with the right secret 200', res.text);

  step('A: PKCE negatives');
  const flow6 = await authorize(iss, { login: 'erin', quiet: true });
  res = await tokenRequest(iss, { grant_type: 'authorization_code', code: flow6.code, redirect_uri: REDIRECT_URI, code_verifier: pkce().verifier });
  expectOAuthError(res, 400, 'invalid_grant', 'wrong code_verifier');
  const noPkce = new URL('/auth', iss);
  noPkce.search = new URLSearchParams({ response_type: 'code', client_id: CLIENT_ID, redirect_uri: REDIRECT_URI, scope: SCOPE, state: 'st' }).toString();
  res = await http('GET', noPkce.href);
  let loc = new URL(res.location);
  expect(res.status === 303 && loc.searchParams.get('error') === 'invalid_request' && loc.searchParams.get('state') === 'st', 'authorize without code_challenge: 303 to redirect_uri with error=invalid_request&state', res.location);
  note(`   error_description: ${loc.searchParams.get('error_description')}`);
  noPkce.searchParams.set('code_challenge', pkce().challenge);
  noPkce.searchParams.set('code_challenge_method', 'plain');
  res = await http('GET', noPkce.href);
  loc = new URL(res.location);
  expect(res.status === 303 && loc.searchParams.get('error') === 'invalid_request', 'code_challenge_method=plain: error=invalid_request', res.location);
  note(`   error_description: ${loc.searchParams.get('error_description')}`);
  noPkce.searchParams.set('redirect_uri', 'http://127.0.0.1:1/other');
  res = await http('GET', noPkce.href);
  expect(res.status === 400 && !res.location && res.json?.error === 'invalid_redirect_uri', 'unregistered redirect_uri: 400 JSON error page, no redirect', `${res.status} ${res.text}`);
  note(`   body: ${res.text}`);

  step('A: interaction pages without cookies');
  const jar = new CookieJar();
  const { challenge } = pkce();
  const u = new URL('/auth', iss);
  u.search = new URLSearchParams({ response_type: 'code', client_id: CLIENT_ID, redirect_uri: REDIRECT_URI, scope: SCOPE, state: 's', code_challenge: challenge, code_challenge_method: 'S256' }).toString();
  res = await http('GET', u.href, { jar });
  res = await http('GET', new URL(res.location, iss).href); // no jar
  expect(res.status === 400, 'GET /interaction/{uid} without the _interaction cookie: 400', `${res.status} ${res.text.slice(0, 200)}`);
  note(`   body: ${res.text.slice(0, 200)}`);

  step('A: OAuth-only scope (no openid): "offline_access tweet.write users.read"');
  const flow7 = await authorize(iss, { login: 'gina', scope: 'offline_access tweet.write users.read', quiet: true });
  const t7 = await exchange(iss, flow7);
  expect(t7.scope === 'offline_access tweet.write users.read' && t7.id_token === undefined, 'scope as requested, no id_token', t7);
  res = await me(iss, t7.access_token);
  expect(res.status === 200 && res.json.sub === 'gina', '/me 200 sub=gina', res.text);
  res = await refresh(iss, t7.refresh_token);
  expect(res.status === 200 && res.json.refresh_token !== t7.refresh_token, 'refresh rotates', res.text);

  step('A: unknown scope value is dropped silently');
  const flow8 = await authorize(iss, { login: 'hank', scope: 'offline_access tweet.write no.such.scope', quiet: true });
  const t8 = await exchange(iss, flow8);
  expect(t8.scope === 'offline_access tweet.write', 'granted scope = "offline_access tweet.write"', t8.scope);

  step('A: token exchange without redirect_uri (it was sent at /auth)');
  const flow9 = await authorize(iss, { login: 'ivy', quiet: true });
  res = await tokenRequest(iss, { grant_type: 'authorization_code', code: flow9.code, code_verifier: flow9.verifier });
  expect(res.status === 200, 'accepted (oidc-provider: redirect_uri may be omitted when the client has one registered)', res.status);

  step('A: the user denies (abort link on the interaction page)');
  {
    const denyJar = new CookieJar();
    const { challenge: ch } = pkce();
    const du = new URL('/auth', iss);
    du.search = new URLSearchParams({ response_type: 'code', client_id: CLIENT_ID, redirect_uri: REDIRECT_URI, scope: SCOPE, state: 'deny-state', code_challenge: ch, code_challenge_method: 'S256' }).toString();
    res = await http('GET', du.href, { jar: denyJar });
    const uid = new URL(res.location, iss).pathname.split('/')[2];
    res = await http('GET', `${iss}/interaction/${uid}/abort`, { jar: denyJar });
    expect(res.status === 303 && res.location === `${iss}/auth/${uid}`, 'GET /interaction/{uid}/abort: 303 to /auth/{uid}', res.location);
    res = await http('GET', res.location, { jar: denyJar });
    const dl = new URL(res.location);
    expect(res.status === 303 && dl.searchParams.get('error') === 'access_denied' && dl.searchParams.get('state') === 'deny-state',
      'then 303 to redirect_uri?error=access_denied&error_description=…&state=…&iss=…', res.location);
    note(`   error_description: ${dl.searchParams.get('error_description')}`);
  }

  step('A: stop the server by closing its stdin');
  await stopViaStdin(A);

  // -------------------------------------------------------------------------------------
  step('B: start server.mjs --access-token-ttl 2 --refresh-token-ttl 4 (token lifetimes are whole seconds)');
  const B = await startServer(['--access-token-ttl', '2', '--refresh-token-ttl', '4']);
  const flowB = await authorize(B.issuer, { quiet: true });
  const tB = await exchange(B.issuer, flowB);
  expect(tB.expires_in === 2, 'expires_in = 2', tB.expires_in);
  res = await me(B.issuer, tB.access_token);
  expect(res.status === 200, '/me 200 right away', res.status);
  note('   sleeping 2.2 s');
  await new Promise((r) => setTimeout(r, 2200));
  res = await me(B.issuer, tB.access_token);
  expect(res.status === 401 && res.headers.get('www-authenticate') === 'Bearer error="invalid_token"', 'expired access token: /me 401 Bearer error="invalid_token"', res.status);
  res = await introspect(B.issuer, tB.access_token);
  expect(res.json?.active === false, 'introspection of the expired access token: {"active":false}', res.text);
  res = await refresh(B.issuer, tB.refresh_token);
  expect(res.status === 200 && res.json.expires_in === 2, 'refresh with the (still valid) refresh token: 200', res.text);
  const tB2 = res.json;
  res = await me(B.issuer, tB2.access_token);
  expect(res.status === 200, 'new access token works', res.status);
  note('   sleeping 4.2 s (the rotated refresh token got a fresh 4 s lifetime)');
  await new Promise((r) => setTimeout(r, 4200));
  res = await refresh(B.issuer, tB2.refresh_token);
  expectOAuthError(res, 400, 'invalid_grant', 'expired refresh token');

  step('B: SIGTERM stops the server');
  B.child.kill('SIGTERM');
  const [codeB] = await once(B.child, 'exit');
  expect(codeB === 0, 'exit code 0 after SIGTERM', codeB);

  // -------------------------------------------------------------------------------------
  step('C: start server.mjs --token-auth-method client_secret_post --strict-offline-access');
  const C = await startServer(['--token-auth-method', 'client_secret_post', '--strict-offline-access']);
  const flowC0 = await authorize(C.issuer, { quiet: true });
  const tC0 = await exchange(C.issuer, flowC0, { auth: 'post', noRefresh: true });
  expect(tC0.scope === 'openid tweet.write users.read', 'strict mode, no prompt=consent: offline_access silently dropped from scope', tC0.scope);
  const flowC = await authorize(C.issuer, { quiet: true, extra: { prompt: 'consent' } });
  const tC = await exchange(C.issuer, flowC, { auth: 'post' });
  expect(tC.scope === SCOPE, 'strict mode with prompt=consent: offline_access granted, refresh token issued', tC.scope);
  res = await refresh(C.issuer, tC.refresh_token, { auth: 'basic' });
  expectOAuthError(res, 401, 'invalid_client', 'Basic auth for a client_secret_post client');
  res = await refresh(C.issuer, tC.refresh_token, { auth: 'post' });
  expect(res.status === 200, 'refresh with client_secret_post: 200', res.text);
  await stopViaStdin(C);

  console.log(`\nPASS: ${checks} checks in ${stepNo} steps`);
}

main().then(
  () => process.exit(0),
  (err) => {
    console.log(`\nFAIL at step ${stepNo}: ${err instanceof Mismatch ? err.message : err.stack}`);
    for (const { child } of servers) {
      if (child.exitCode === null) child.kill('SIGTERM');
    }
    const last = servers.at(-1);
    if (last) process.stderr.write(`--- stderr of the last server ---\n${Buffer.concat(last.stderr)}\n`);
    process.exit(1);
  },
);
