// The bundled action (dist/main.cjs, dist/post.cjs) run as the runner runs it,
// against the real `stockroom` sidecar and a real `stockroom-pool`.

import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import { spawnSync } from 'node:child_process';
import * as h from './helpers.js';
import { releaseTarget, assetName } from '../src/lib/install.js';

let work;
let pool;
let manifest;
let nextRun = 1000;
const newRunId = () => String(nextRun++);

test.before(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'stockroom-action-test-'));
  pool = await h.startPool(work);
  await h.seedCustomers(pool, 12, 'C');
  manifest = h.writeManifest(work);
});

test.after(async () => {
  if (pool) await pool.stop();
  if (process.env.KEEP_TEST_DIR) console.log(`kept ${work}`);
  else if (work) fs.rmSync(work, { recursive: true, force: true });
});

function commonInputs(extra = {}) {
  return { manifest, pool: pool.url, binary: h.STOCKROOM, 'shard-index': '0', 'shard-total': '1', ...extra };
}

/** main in start mode; returns the job, the parsed outputs and the leased dataset. */
async function leaseWithStart(inputs, runId = newRunId()) {
  const job = h.makeJob(work, { runId });
  const main = await h.runMain(job, inputs);
  assert.equal(main.code, 0, h.describe(main));
  const outputs = h.parseFileCommands(job.read('GITHUB_OUTPUT'));
  const env = h.parseFileCommands(job.read('GITHUB_ENV'));
  const datasetsFile = JSON.parse(fs.readFileSync(outputs.get('datasets-file'), 'utf8'));
  return { job, main, outputs, env, datasetsFile, buyer: datasetsFile.datasets.buyer };
}

test('start: masks first, exports the variables through GITHUB_ENV, sets the outputs', async () => {
  const token = 'tok-0123456789-secret';
  const { job, main, outputs, env, datasetsFile, buyer } = await leaseWithStart(commonInputs({ token }));

  const lines = main.stdout.split(/\r?\n/);
  assert.equal(lines[0], `::add-mask::${token}`, 'the token is masked before anything else is printed');
  const password = env.get('STOCKROOM_BUYER_PASSWORD');
  assert.match(password, /^pw-C-\d+-s3cret$/);
  const maskAt = lines.indexOf(`::add-mask::${password}`);
  assert.ok(maskAt >= 0, `the secret field is masked:\n${main.stdout}`);
  assert.equal(
    lines.filter((l) => l.includes(password)).length,
    1,
    'the secret appears on no line but its mask',
  );
  assert.ok(!main.stderr.includes(password), 'nor on stderr');
  assert.ok(!main.stdout.includes(token.slice(4)) || lines.filter((l) => l.includes(token)).length === 1);

  assert.match(env.get('STOCKROOM_BUYER_ID'), /\S/);
  assert.equal(env.get('STOCKROOM_BUYER_ID'), buyer.id);
  assert.match(env.get('STOCKROOM_BUYER_CUSTOMER_ID'), /^C\d+$/);
  assert.equal(env.get('STOCKROOM_SHARD_INDEX'), '0');
  assert.equal(env.get('STOCKROOM_SHARD_TOTAL'), '1');
  assert.equal(outputs.get('lease-id'), env.get('STOCKROOM_LEASE_ID'));
  assert.equal(outputs.get('datasets-file'), env.get('STOCKROOM_DATASETS_FILE'));
  assert.equal(datasetsFile.lease_id, outputs.get('lease-id'));
  assert.equal(fs.statSync(outputs.get('datasets-file')).mode & 0o777, 0o600);
  assert.equal(await h.statusOf(pool, buyer.id), 'leased');

  // Later steps find the lease through STOCKROOM_STATE_DIR: `stockroom status` there names it.
  const stateDir = env.get('STOCKROOM_STATE_DIR');
  assert.ok(stateDir && fs.existsSync(path.join(stateDir, 'state.json')), `STOCKROOM_STATE_DIR=${stateDir}`);
  const status = spawnSync(h.STOCKROOM, ['status'], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH, HOME: job.baseEnv.HOME, STOCKROOM_STATE_DIR: stateDir },
  });
  assert.equal(status.status, 0, `${status.stdout}\n${status.stderr}`);
  assert.ok(`${status.stdout}${status.stderr}`.includes(outputs.get('lease-id')), status.stdout + status.stderr);

  const post = await h.runPost(job, { ...commonInputs({ token }), 'job-status': 'success' });
  assert.equal(post.code, 0, h.describe(post));
  assert.equal(await h.statusOf(pool, buyer.id), 'consumed');
  const summary = job.read('GITHUB_STEP_SUMMARY');
  assert.equal((summary.match(/^### Stockroom/gm) || []).length, 1, `one summary, not two:\n${summary}`);
  assert.match(summary, /passed/);
  assert.match(summary, /consumed|released/);
  assert.ok(summary.includes(buyer.id), summary);
  assert.ok(!summary.includes(password), 'the summary never holds data');
});

for (const [jobStatus, outcome] of [
  ['failure', 'failed'],
  ['cancelled', 'cancelled'],
]) {
  test(`post with job.status=${jobStatus} quarantines (${outcome})`, async () => {
    const { job, buyer } = await leaseWithStart(commonInputs());
    assert.equal(await h.statusOf(pool, buyer.id), 'leased');
    const post = await h.runPost(job, { ...commonInputs(), 'job-status': jobStatus });
    assert.equal(post.code, 0, h.describe(post));
    assert.equal(await h.statusOf(pool, buyer.id), 'quarantined');
    const summary = job.read('GITHUB_STEP_SUMMARY');
    assert.equal((summary.match(/^### Stockroom/gm) || []).length, 1, summary);
    assert.match(summary, new RegExp(outcome));
    assert.match(summary, /quarantined/);
    const quarantined = await h.datasetsWithStatus(pool, 'quarantined');
    assert.ok(quarantined.some((d) => d.id === buyer.id));
  });
}

test('two matrix legs of one run get distinct datasets', async () => {
  const runId = newRunId();
  const a = await leaseWithStart(commonInputs({ 'shard-index': '0', 'shard-total': '2' }), runId);
  const b = await leaseWithStart(commonInputs({ 'shard-index': '1', 'shard-total': '2' }), runId);
  assert.notEqual(a.buyer.id, b.buyer.id);
  assert.notEqual(a.outputs.get('lease-id'), b.outputs.get('lease-id'));
  assert.equal(b.env.get('STOCKROOM_SHARD_INDEX'), '1');
  assert.deepEqual(b.datasetsFile.shard, { index: 1, total: 2 });
  for (const leg of [a, b]) {
    const post = await h.runPost(leg.job, { ...commonInputs(), 'job-status': 'success' });
    assert.equal(post.code, 0, h.describe(post));
  }
});

test('post after a main step that leased nothing does nothing', async () => {
  const job = h.makeJob(work, { runId: newRunId() });
  const post = await h.runPost(job, { ...commonInputs(), 'job-status': 'failure' });
  assert.equal(post.code, 0, h.describe(post));
  assert.match(post.stdout, /nothing to release/);
});

test('start against an unreachable pool fails the step with the sidecar exit meaning', async () => {
  const job = h.makeJob(work, { runId: newRunId() });
  const main = await h.runMain(job, commonInputs({ pool: 'http://127.0.0.1:9' }), {
    env: { STOCKROOM_RETRY_FOR: '1s' },
  });
  assert.notEqual(main.code, 0, h.describe(main));
  assert.match(main.stdout, /::error::stockroom start failed \(exit 69: the pool is unreachable\)/);
  const post = await h.runPost(job, { ...commonInputs(), 'job-status': 'failure' });
  assert.equal(post.code, 0, h.describe(post));
});

test('run: wraps the command, which sees the variables; passed → released', async () => {
  const job = h.makeJob(work, { runId: newRunId() });
  const seen = path.join(job.dir, 'seen.json');
  const main = await h.runMain(
    job,
    commonInputs({
      run: `test -n "$STOCKROOM_BUYER_EMAIL" && cp "$STOCKROOM_DATASETS_FILE" ${seen}`,
    }),
  );
  assert.equal(main.code, 0, h.describe(main));
  const buyer = JSON.parse(fs.readFileSync(seen, 'utf8')).datasets.buyer;
  assert.equal(await h.statusOf(pool, buyer.id), 'consumed');
  assert.equal(job.read('GITHUB_ENV'), '', 'run mode leaks no variables to later steps');
  const post = await h.runPost(job, { ...commonInputs(), 'job-status': 'success' });
  assert.equal(post.code, 0, h.describe(post));
  assert.match(job.read('GITHUB_STEP_SUMMARY'), /exit 0/);
});

test('run: a failing command fails the step and quarantines', async () => {
  const job = h.makeJob(work, { runId: newRunId() });
  const seen = path.join(job.dir, 'seen.json');
  const main = await h.runMain(job, commonInputs({ run: `cp "$STOCKROOM_DATASETS_FILE" ${seen}; exit 3` }));
  assert.equal(main.code, 1, h.describe(main));
  assert.match(main.stdout, /::error::stockroom run: exit 3/);
  const buyer = JSON.parse(fs.readFileSync(seen, 'utf8')).datasets.buyer;
  assert.equal(await h.statusOf(pool, buyer.id), 'quarantined');
  const post = await h.runPost(job, { ...commonInputs(), 'job-status': 'failure' });
  assert.equal(post.code, 0, h.describe(post));
  assert.match(job.read('GITHUB_STEP_SUMMARY'), /exit 3/);
});

/** A copy of the action whose checksums.json pins `asset` for `version`. */
function actionCopyPinning(version, assetFile) {
  const dir = fs.mkdtempSync(path.join(work, 'action-'));
  fs.copyFileSync(path.join(h.ACTION_DIR, 'action.yml'), path.join(dir, 'action.yml'));
  fs.copyFileSync(path.join(h.ACTION_DIR, 'checksums.json'), path.join(dir, 'checksums.json'));
  fs.cpSync(path.join(h.ACTION_DIR, 'dist'), path.join(dir, 'dist'), { recursive: true });
  const pin = spawnSync(
    process.execPath,
    [path.join(h.ACTION_DIR, 'scripts', 'pin-checksums.js'), version, assetFile, '--default', '--file', path.join(dir, 'checksums.json')],
    { encoding: 'utf8' },
  );
  assert.equal(pin.status, 0, pin.stderr);
  return dir;
}

/** Serves `files` (url path → Buffer) on 127.0.0.1; records what was asked. */
async function serve(files) {
  const requests = [];
  const server = http.createServer((req, res) => {
    requests.push(req.url);
    const body = files[req.url];
    if (!body) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/gzip' }).end(body);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${server.address().port}/releases/download`, requests, close: () => server.close() };
}

test('install: downloads the release asset from the base URL and verifies the pinned checksum', async () => {
  const version = '0.0.0-test';
  const asset = assetName(version, releaseTarget());
  const staging = fs.mkdtempSync(path.join(work, 'asset-'));
  fs.mkdirSync(path.join(staging, `stockroom-${version}`));
  fs.copyFileSync(h.STOCKROOM, path.join(staging, `stockroom-${version}`, 'stockroom'));
  const assetFile = path.join(staging, asset);
  const tar = spawnSync('tar', ['-czf', assetFile, '-C', staging, `stockroom-${version}`]);
  assert.equal(tar.status, 0, String(tar.stderr));
  const actionDir = actionCopyPinning(version, assetFile);
  const server = await serve({ [`/releases/download/v${version}/${asset}`]: fs.readFileSync(assetFile) });
  try {
    // A PATH without stockroom on it, but with tar.
    const env = { PATH: '/usr/bin:/bin' };

    const job = h.makeJob(work, { runId: newRunId() });
    const toolCache = path.join(job.dir, 'tool-cache');
    const inputs = { manifest, pool: pool.url, 'shard-index': '0', 'shard-total': '1', 'download-url': server.url };
    const main = await h.runMain(job, inputs, { actionDir, env: { ...env, RUNNER_TOOL_CACHE: toolCache } });
    assert.equal(main.code, 0, h.describe(main));
    assert.deepEqual(server.requests, [`/releases/download/v${version}/${asset}`]);
    const installedDir = path.join(toolCache, 'stockroom', version, releaseTarget());
    assert.equal(job.read('GITHUB_PATH').trim(), installedDir, 'later steps get stockroom on PATH');
    assert.match(main.stdout, new RegExp(`using ${installedDir}/stockroom \\(download\\)`));
    const post = await h.runPost(job, { ...inputs, 'job-status': 'success' }, { actionDir, env });
    assert.equal(post.code, 0, h.describe(post));

    // A tampered asset is refused and never unpacked.
    const tampered = Buffer.concat([fs.readFileSync(assetFile), Buffer.from('x')]);
    const evil = await serve({ [`/releases/download/v${version}/${asset}`]: tampered });
    try {
      const job2 = h.makeJob(work, { runId: newRunId() });
      const cache2 = path.join(job2.dir, 'tool-cache');
      const bad = await h.runMain(job2, { ...inputs, 'download-url': evil.url }, { actionDir, env: { ...env, RUNNER_TOOL_CACHE: cache2 } });
      assert.equal(bad.code, 1, h.describe(bad));
      assert.match(bad.stdout, /::error::checksum mismatch for http:\/\/127\.0\.0\.1:\d+\/releases\/download\/v0\.0\.0-test\//);
      assert.ok(!fs.existsSync(path.join(cache2, 'stockroom', version, releaseTarget(), 'stockroom')));
      assert.equal(job2.read('GITHUB_STATE').includes('started'), false);
    } finally {
      evil.close();
    }

    // A version this action release does not pin is never downloaded.
    const job3 = h.makeJob(work, { runId: newRunId() });
    const unpinned = await h.runMain(job3, { ...inputs, version: '9.9.9' }, { actionDir, env: { ...env, RUNNER_TOOL_CACHE: path.join(job3.dir, 'tc') } });
    assert.equal(unpinned.code, 1, h.describe(unpinned));
    assert.match(unpinned.stdout, /no checksum is pinned for stockroom-9\.9\.9-/);
  } finally {
    server.close();
  }
});
