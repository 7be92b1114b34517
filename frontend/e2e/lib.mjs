// Shared helpers of the browser scripts (e2e/designer.mjs, bench/render300.mjs): launch Debian's
// chromium through playwright-core with a fresh --user-data-dir (never a downloaded browser),
// log in through the API for setup calls (`apiLogin` -> bearer `api()`), screenshots under
// test-artifacts/, and small `step`/`check` helpers that print progress and fail loudly.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const BASE_URL = (process.env.BASE_URL ?? 'http://127.0.0.1:8005').replace(/\/$/, '');
export const EMAIL = process.env.E2E_EMAIL ?? '';
export const PASSWORD = process.env.E2E_PASSWORD ?? '';
export const ARTIFACTS = path.resolve(process.env.ARTIFACTS_DIR ?? new URL('../../test-artifacts', import.meta.url).pathname);
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  '--no-first-run',
];

export async function launch() {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`chromium not found at ${CHROMIUM}: apt-get install -y chromium`);
  }
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'fs-e2e-profile-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1440, height: 900 },
    deviceScaleFactor: 1,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(15000);
  const close = async () => {
    await context.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  };
  return { context, page, close };
}

export async function apiLogin() {
  const res = await fetch(`${BASE_URL}/api/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: EMAIL, password: PASSWORD }),
  });
  if (!res.ok) throw new Error(`login failed: ${res.status} ${await res.text()}`);
  const { access_token: token } = await res.json();
  return async function api(method, p, body) {
    const r = await fetch(`${BASE_URL}${p}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`${method} ${p} -> ${r.status}: ${text}`);
    return text ? JSON.parse(text) : null;
  };
}

export async function shot(page, name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file });
  console.log(`  screenshot ${file}`);
}

export function check(cond, message) {
  if (!cond) throw new Error(`check failed: ${message}`);
}

export async function step(name, fn) {
  const t = Date.now();
  process.stdout.write(`- ${name} … `);
  const out = await fn();
  console.log(`ok (${Date.now() - t} ms)`);
  return out;
}
