// Browser tests of the pool's web page: Debian's chromium driven by
// playwright-core against the real `stockroom-pool` binary (the demo shop,
// and a pool with a ci and an admin token for the role checks).
// Run: npm ci && npm test (after `cargo build -p stockroom-pool`).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const BIN = process.env.STOCKROOM_POOL_BIN || path.join(root, 'target', 'debug', 'stockroom-pool');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = path.join(root, 'docs', 'ui');
const CI_TOKEN = 'ui-test-ci-token';
const ADMIN_TOKEN = 'ui-test-admin-token';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run'];

for (const [what, p] of [['the pool binary (cargo build -p stockroom-pool)', BIN], ['chromium (apt-get install chromium)', CHROMIUM]]) {
  if (!fs.existsSync(p)) throw new Error(`missing ${what}: ${p}`);
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'stockroom-ui-'));
const children = [];
const contexts = [];

async function startPool(args, name) {
  const ready = path.join(tmp, `${name}.ready`);
  const log = fs.openSync(path.join(tmp, `${name}.log`), 'w');
  const child = spawn(BIN, [...args, '--ready-file', ready], {
    stdio: ['ignore', log, log],
    env: { ...process.env, STOCKROOM_UI_SAMPLE_SECONDS: '1' },
  });
  children.push(child);
  for (let i = 0; i < 600; i++) {
    if (fs.existsSync(ready)) return `http://${fs.readFileSync(ready, 'utf8').trim()}`;
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`pool ${name} did not start; log: ${fs.readFileSync(path.join(tmp, `${name}.log`), 'utf8')}`);
}

/** A browser with a fresh user-data dir. */
async function browser(options = {}) {
  const dir = fs.mkdtempSync(path.join(tmp, 'profile-'));
  const ctx = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM, headless: true, args: FLAGS,
    viewport: { width: 1366, height: 800 }, ...options,
  });
  contexts.push(ctx);
  return ctx;
}

// `leaseToken`: the lease_token of a lease answer, which heartbeat, release
// and extend need (docs/pool.md, "Lease tokens: only the holder touches a lease").
async function api(base, method, p, token, body, leaseToken) {
  const r = await fetch(base + p, {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body ? { 'content-type': 'application/json' } : {}),
      ...(leaseToken ? { 'stockroom-lease-token': leaseToken } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

const shot = (page, name) => page.screenshot({ path: path.join(SHOTS, name), fullPage: true });

let demo; // base URL of the demo shop
let secured; // base URL of the pool with tokens
let page; // the demo's page, shared by the steps in order
let leaseUrl;

before(async () => {
  fs.mkdirSync(SHOTS, { recursive: true });
  demo = await startPool(['demo', '--listen', '127.0.0.1:0', '--latency', '20ms'], 'demo');
  const sha = (t) => createHash('sha256').update(t).digest('hex');
  const cfg = path.join(tmp, 'pool.toml');
  fs.writeFileSync(cfg, `[[tokens]]\nname = "ci-bot"\nrole = "ci"\nsha256 = "${sha(CI_TOKEN)}"\n\n[[tokens]]\nname = "ops"\nrole = "admin"\nsha256 = "${sha(ADMIN_TOKEN)}"\n`);
  secured = await startPool(['--config', cfg, '--listen', '127.0.0.1:0', '--store', `sqlite://${path.join(tmp, 'secured.db')}`], 'secured');
  page = await (await browser()).newPage();
});

after(async () => {
  for (const c of contexts) await c.close().catch(() => {});
  for (const c of children) c.kill('SIGTERM');
});

test('catalog: types, states, production graph, stock gauges, generator health', async () => {
  // Wait for the demo to warm its stock.
  for (let i = 0; i < 100; i++) {
    const c = (await api(demo, 'GET', '/api/v1/catalog')).body;
    const s = c.types.flatMap((t) => t.states).find((s) => s.state === 'active-with-payment');
    if (s && s.stock.ready >= 3) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  await page.goto(demo + '/');
  assert.equal(await page.title(), 'Catalog — Stockroom pool');
  await page.getByText('No tokens configured').waitFor();
  for (const t of ['customer', 'order']) await page.getByRole('heading', { name: t, exact: true }).waitFor();
  assert.ok(await page.locator('svg.graph').count() >= 2, 'a graph per type');
  assert.match(await page.locator('svg.graph').first().getAttribute('aria-label'), /active-with-payment from active by add-card/);
  assert.ok(await page.locator('.gauge svg[role=img]').count() >= 6, 'a gauge per state');
  const gen = page.locator('section[aria-labelledby=gen-h] tbody tr');
  assert.equal(await gen.count(), 3);
  assert.equal(await page.locator('section[aria-labelledby=gen-h] .badge.ok').count(), 3, 'every generator up');
  await shot(page, 'catalog.png');
  // Keyboard: the first Tab lands on the skip link, the next on the navigation.
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Skip to content');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Catalog');
});

test('lease by hand: data with copy buttons, secrets hidden until revealed', async () => {
  await page.getByRole('link', { name: 'Lease customer/active-with-payment' }).click();
  await page.waitForURL(/\/ui\/lease\?state=/);
  assert.equal(await page.getByLabel('State').inputValue(), 'customer/active-with-payment');
  await page.getByLabel(/Attributes/).fill('');
  await page.getByLabel('Count').fill('1');
  await page.getByLabel('TTL (seconds)').fill('900');
  await page.getByRole('button', { name: 'Lease' }).click();
  await page.waitForURL(/\/ui\/leases\/[^/]+$/);
  leaseUrl = page.url();
  assert.equal(await page.locator('#lease-status').textContent(), 'active');
  const secret = page.locator('details.secret').first();
  await secret.waitFor();
  assert.equal(await secret.locator('code.v').isVisible(), false, 'the secret is hidden');
  assert.ok(await page.getByRole('button', { name: 'Copy customer_id' }).count() >= 1, 'copy buttons');
  assert.ok(await page.getByRole('button', { name: 'Copy email', exact: true }).isVisible());
  await shot(page, 'lease-by-hand.png');
  await secret.locator('summary').click();
  assert.equal(await secret.locator('code.v').isVisible(), true, 'revealed');
  assert.notEqual(await secret.locator('code.v').textContent(), '[redacted]');
});

test('active leases: holder, CI job link, shard, time left', async () => {
  const r = await api(demo, 'POST', '/api/v1/leases', null, {
    holder: { ci: 'gitlab', repository: 'shop/web', run_id: '8812', job: 'e2e', shard_index: 1, shard_total: 4,
      url: 'https://gitlab.example/shop/web/-/jobs/8812' },
    ttl_seconds: 1800, items: [{ name: 'order', type: 'order', state: 'placed' }],
  });
  assert.equal(r.status, 201);
  await page.getByRole('link', { name: 'Active leases' }).click();
  await page.waitForURL(/\/ui\/leases$/);
  const id = leaseUrl.split('/').pop();
  const mine = page.locator('#leases tbody tr', { hasText: id });
  assert.match(await mine.textContent(), /web #anonymous by hand/);
  const ci = page.locator('#leases tbody tr', { hasText: 'shop/web#8812' });
  assert.equal(await ci.getByRole('link', { name: 'e2e', exact: true }).getAttribute('href'), 'https://gitlab.example/shop/web/-/jobs/8812');
  assert.match(await ci.textContent(), /1 \/ 4/);
  assert.match(await ci.locator('time').textContent(), /^(29|30)m \d\ds$/);
  await shot(page, 'active-leases.png');
});

test('release the lease taken by hand', async () => {
  await page.goto(leaseUrl);
  await page.getByRole('button', { name: 'Release (passed)' }).click();
  await page.waitForURL(leaseUrl);
  assert.equal(await page.locator('#lease-status').textContent(), 'released');
  await page.goto(demo + '/ui/leases');
  assert.equal(await page.locator('#leases tbody tr', { hasText: leaseUrl.split('/').pop() }).count(), 0);
});

test('quarantine one by hand, see it with its reason and history, recycle it', async () => {
  await page.goto(demo + '/ui/lease?state=customer/new');
  await page.getByRole('button', { name: 'Lease' }).click();
  await page.waitForURL(/\/ui\/leases\/[^/]+$/);
  const datasetId = await page.locator('section.dataset h2 a code').first().textContent();
  await page.getByLabel(/Reason/).fill('email bounced');
  await page.getByRole('button', { name: 'Quarantine (failed)' }).click();
  await page.waitForURL(/\/ui\/leases\//);
  assert.equal(await page.locator('#lease-status').textContent(), 'released');
  await page.getByRole('link', { name: 'Quarantine' }).click();
  const row = page.locator('#quarantine tbody tr', { hasText: datasetId });
  assert.match(await row.textContent(), /email bounced/);
  await row.locator('details summary').click();
  assert.match(await row.locator('details ol').textContent(), /leased → quarantined/);
  await shot(page, 'quarantine.png');
  await row.getByRole('button', { name: `Recycle ${datasetId}` }).click();
  await page.getByText(`Dataset ${datasetId} recycled`).waitFor();
  // The dataset's full history.
  await page.goto(`${demo}/ui/datasets/${datasetId}`);
  assert.equal(await page.locator('#dataset-status').textContent(), 'ready');
  const hist = await page.locator('table.history').textContent();
  for (const s of ['generating', 'leased', 'quarantined', 'ready']) assert.ok(hist.includes(s), s);
  await shot(page, 'dataset-history.png');
});

test('stock over time: an inline SVG chart from the recorded samples', async () => {
  await new Promise((r) => setTimeout(r, 2500));
  await page.getByRole('link', { name: 'Stock over time' }).click();
  const charts = page.locator('figure.chart svg');
  assert.ok(await charts.count() >= 4);
  assert.equal(await charts.first().locator('polyline').count(), 4);
  await shot(page, 'stock-over-time.png');
});

test('reading works without JavaScript', async () => {
  const p = await (await browser({ javaScriptEnabled: false })).newPage();
  await p.goto(demo + '/');
  await p.getByRole('heading', { name: 'customer', exact: true }).waitFor();
  await p.goto(demo + '/ui/leases');
  await p.getByRole('heading', { name: 'Active leases' }).waitFor();
  assert.ok(await p.locator('#leases tbody tr').count() >= 1);
});

test('tokens: sign-in, and only an admin can settle quarantined datasets', async () => {
  const reg = await api(secured, 'POST', '/api/v1/datasets', ADMIN_TOKEN,
    { type: 'customer', state: 'new', data: { email: 'q@example.com', password: 'pw' }, secret_fields: ['password'] });
  assert.equal(reg.status, 201);
  const id = reg.body.datasets[0].id;
  const lease = await api(secured, 'POST', '/api/v1/leases', CI_TOKEN,
    { holder: { ci: 'test', url: 'https://ci.example/job/7' }, items: [{ name: 'c', type: 'customer', state: 'new' }] });
  assert.equal(lease.status, 201);
  const rel = await api(secured, 'POST', `/api/v1/leases/${lease.body.lease_id}/release`, CI_TOKEN,
    { outcome: 'failed', reason: 'login broke' }, lease.body.lease_token);
  assert.equal(rel.status, 200);

  const signIn = async (token) => {
    const ctx = await browser();
    const p = await ctx.newPage();
    await p.goto(secured + '/ui/quarantine');
    await p.waitForURL(/\/ui\/login$/);
    await p.getByLabel('Token').fill(token);
    await p.getByRole('button', { name: 'Sign in' }).click();
    await p.waitForURL(secured + '/');
    const cookie = (await ctx.cookies()).find((c) => c.name === 'stockroom_session');
    assert.ok(cookie.httpOnly && cookie.sameSite === 'Strict', 'HttpOnly, SameSite=Strict');
    assert.notEqual(cookie.value, token);
    assert.ok(!(await p.content()).includes(token), 'no token in the page');
    assert.ok(!p.url().includes(token), 'no token in the URL');
    return p;
  };

  const ci = await signIn(CI_TOKEN);
  await ci.getByText('Signed in as ci-bot').waitFor();
  await ci.getByRole('link', { name: 'Quarantine' }).click();
  const ciRow = ci.locator('#quarantine tbody tr', { hasText: id });
  assert.match(await ciRow.textContent(), /login broke/);
  assert.equal(await ciRow.getByRole('link', { name: 'job', exact: true }).getAttribute('href'), 'https://ci.example/job/7');
  assert.equal(await ciRow.getByRole('button').count(), 0, 'no settle buttons for ci');
  assert.match(await ciRow.textContent(), /admin only/);
  // Even a hand-made POST with the ci session's own CSRF token is refused.
  const status = await ci.evaluate(async (id) => {
    const csrf = document.querySelector('input[name=csrf]').value;
    const r = await fetch(`/ui/datasets/${id}/discard`, { method: 'POST', body: new URLSearchParams({ csrf }) });
    return r.status;
  }, id);
  assert.equal(status, 403);
  assert.equal((await api(secured, 'GET', `/api/v1/datasets/${id}`, CI_TOKEN)).body.status, 'quarantined');

  const admin = await signIn(ADMIN_TOKEN);
  await admin.getByRole('link', { name: 'Quarantine' }).click();
  await admin.locator('#quarantine tbody tr', { hasText: id }).getByRole('button', { name: `Discard ${id}` }).click();
  await admin.getByText(`Dataset ${id} discarded`).waitFor();
  assert.equal((await api(secured, 'GET', `/api/v1/datasets/${id}`, CI_TOKEN)).body.status, 'discarded');
  await shot(admin, 'quarantine-admin-signed-in.png');
  await admin.getByRole('button', { name: 'Sign out' }).click();
  await admin.waitForURL(/\/ui\/login$/);
});
