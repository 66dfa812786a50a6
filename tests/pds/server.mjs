#!/usr/bin/env node
// The reference AT Protocol PDS, for the Bluesky adapter's conformance tests.
//
// Runs `@atproto/pds` (Bluesky's own PDS, the one self-hosters run) on loopback in dev
// mode, with an in-memory PLC directory (`@did-plc/server` with its mock database) so
// that creating an account registers a real did:plc there and nothing leaves the
// machine. Accounts live under `.test`; the data directory is a fresh temporary one,
// removed at exit.
//
// Contract with the spawning process:
//   * stdout receives exactly one line once both servers listen:
//       READY {"pds":"http://localhost:PORT","plc":"http://127.0.0.1:PORT","admin_password":"..."}
//     (dev mode makes the PDS's public URL `http://localhost:PORT`, and that is the
//     endpoint its DID documents name). Everything else goes to stderr.
//   * The process exits when its stdin closes, so a test that dies takes it along.
//
// Accounts, app passwords and takedowns are made through the PDS's own XRPC API
// (`com.atproto.server.createAccount`, `createAppPassword`, `revokeAppPassword`,
// `com.atproto.admin.updateSubjectStatus` with Basic `admin:<admin_password>`).

import { createRequire } from 'node:module';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

// The PDS's logger reads its settings when it is loaded: set them first. Off unless
// PDS_LOG is set; to stderr, never stdout (stdout carries only the READY line).
process.env.LOG_ENABLED = process.env.PDS_LOG ? 'true' : 'false';
process.env.LOG_DESTINATION = '/dev/stderr';

const require = createRequire(import.meta.url);
const plc = require('@did-plc/server');
const { PDS, envToCfg, envToSecrets, readEnv } = require('@atproto/pds');

/** A port free right now (the PDS needs its port before it starts: it is in its URL). */
function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'studio-pds-'));
let stopping = false;
let plcServer;
let pds;

async function stop(code) {
  if (stopping) return;
  stopping = true;
  try {
    await pds?.destroy();
  } catch {}
  try {
    await plcServer?.destroy();
  } catch {}
  fs.rmSync(dir, { recursive: true, force: true });
  process.exit(code);
}

async function main() {
  plcServer = plc.PlcServer.create({ db: plc.Database.mock(), port: 0 });
  const plcHttp = await plcServer.start();
  const plcUrl = `http://127.0.0.1:${plcHttp.address().port}`;
  const port = await freePort();
  const adminPassword = crypto.randomBytes(12).toString('hex');
  Object.assign(process.env, {
    PDS_PORT: String(port),
    PDS_HOSTNAME: 'localhost',
    PDS_DEV_MODE: 'true',
    PDS_DATA_DIRECTORY: dir,
    PDS_BLOBSTORE_DISK_LOCATION: path.join(dir, 'blobs'),
    PDS_DID_PLC_URL: plcUrl,
    PDS_JWT_SECRET: crypto.randomBytes(16).toString('hex'),
    PDS_ADMIN_PASSWORD: adminPassword,
    // A secp256k1 private key is 32 bytes below the curve order: random bytes are, but
    // for a chance of about 2^-128.
    PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX: crypto.randomBytes(32).toString('hex'),
    PDS_INVITE_REQUIRED: 'false',
    PDS_SERVICE_HANDLE_DOMAINS: '.test',
    PDS_CRAWLERS: '',
    PDS_RATE_LIMITS_ENABLED: 'false',
  });
  const env = readEnv();
  pds = await PDS.create(envToCfg(env), envToSecrets(env));
  await pds.start();
  process.stdout.write(
    `READY ${JSON.stringify({ pds: `http://localhost:${port}`, plc: plcUrl, admin_password: adminPassword })}\n`,
  );
}

process.stdin.on('end', () => stop(0));
process.stdin.on('close', () => stop(0));
process.stdin.resume();
process.on('SIGTERM', () => stop(0));
main().catch((error) => {
  console.error(error);
  stop(1);
});
