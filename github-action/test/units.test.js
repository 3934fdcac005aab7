// The pieces that need no sidecar: reading back what @actions/core writes,
// the outcome mapping, the summary, and the verified install through
// @actions/tool-cache from a loopback server.

import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import crypto from 'node:crypto';
import { spawnSync } from 'node:child_process';
import * as core from '@actions/core';
import { parseFileCommands } from '../src/lib/envfile.js';
import { outcomeFor, commonArgs, sidecarEnv } from '../src/lib/sidecar.js';
import { renderSummary } from '../src/lib/summary.js';
import { releaseTarget, pickAsset, assetName, installRelease, findActionRoot, TOOL, VERIFIED_MARKER } from '../src/lib/install.js';

const made = [];
const tmp = (prefix) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  made.push(dir);
  return dir;
};
test.after(() => {
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true });
});

/** Runs `fn` with these variables in process.env (what @actions/core reads), then restores them. */
async function withEnv(vars, fn) {
  const saved = {};
  for (const key of Object.keys(vars)) saved[key] = process.env[key];
  Object.assign(process.env, vars);
  try {
    return await fn();
  } finally {
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  }
}

test('what @actions/core writes to an environment file reads back, multi-line values included', async () => {
  const file = path.join(tmp('wf-'), 'env');
  fs.writeFileSync(file, 'PLAIN=a=b\n');
  await withEnv({ GITHUB_ENV: file, GITHUB_OUTPUT: file }, () => {
    core.exportVariable('MULTI', 'line 1\nline 2');
    core.exportVariable('PLAIN', 'later wins');
    core.setOutput('lease-id', 'L-1');
  });
  const parsed = parseFileCommands(fs.readFileSync(file, 'utf8'));
  assert.equal(parsed.get('MULTI'), 'line 1\nline 2');
  assert.equal(parsed.get('PLAIN'), 'later wins');
  assert.equal(parsed.get('lease-id'), 'L-1');
  assert.throws(() => parseFileCommands('X<<EOF\nno end\n'), /unterminated heredoc/);
  assert.throws(() => parseFileCommands('no equals sign\n'), /malformed line/);
});

test('hyphenated inputs (shard-index, job-status) reach the action, trimmed', async () => {
  await withEnv({ 'INPUT_SHARD-INDEX': ' 2 ', 'INPUT_JOB-STATUS': '' }, () => {
    assert.equal(core.getInput('shard-index'), '2');
    assert.equal(core.getInput('job-status'), '');
  });
});

test('job.status maps to the sidecar outcome; nothing else releases', () => {
  assert.equal(outcomeFor('success'), 'passed');
  assert.equal(outcomeFor('failure'), 'failed');
  assert.equal(outcomeFor('cancelled'), 'cancelled');
  assert.equal(outcomeFor(''), undefined);
  assert.equal(outcomeFor('skipped'), undefined);
});

test('empty inputs are left to the sidecar; the token never becomes a flag', () => {
  assert.deepEqual(commonArgs({ manifest: '', pool: '', shardIndex: '', shardTotal: '', stateDir: '/s' }), ['--state-dir', '/s']);
  assert.deepEqual(commonArgs({ shardIndex: '0', shardTotal: '3' }), ['--shard-index', '0', '--shard-total', '3']);
  const env = sidecarEnv('t0k', { PATH: '/bin', INPUT_TOKEN: 't0k' });
  assert.equal(env.STOCKROOM_TOKEN, 't0k');
  assert.equal(env.INPUT_TOKEN, undefined);
});

test('the summary names datasets by id, type and state, never by data', () => {
  const md = renderSummary({
    leaseId: 'L1',
    shard: { index: 1, total: 3 },
    outcome: 'failed',
    datasetsFile: {
      datasets: {
        buyer: { id: 'd1', type: 'customer', state: 'active', data: { password: 'hunter2' } },
        orders: [{ id: 'd2', type: 'order', state: 'placed', data: {} }, { id: 'd3', type: 'order', state: 'placed', data: {} }],
      },
    },
  });
  assert.match(md, /failed → quarantined/);
  assert.match(md, /`orders\[1\]` \| order\/placed \| `d3`/);
  assert.ok(!md.includes('hunter2'));
});

test('release targets cover the hosted runners', () => {
  assert.equal(releaseTarget('linux', 'x64'), 'x86_64-unknown-linux-musl');
  assert.equal(releaseTarget('darwin', 'arm64'), 'aarch64-apple-darwin');
  assert.throws(() => releaseTarget('win32', 'x64'), /pass its path as the `binary` input/);
  const linux = ['x86_64-unknown-linux-musl', 'x86_64-unknown-linux-gnu'];
  const gnuOnly = { versions: { '1.0.0': { 'stockroom-1.0.0-x86_64-unknown-linux-gnu.tar.gz': 'ab' } } };
  assert.deepEqual(pickAsset(gnuOnly, '1.0.0', linux), {
    target: 'x86_64-unknown-linux-gnu',
    asset: 'stockroom-1.0.0-x86_64-unknown-linux-gnu.tar.gz',
    pinned: 'ab',
  });
  const both = { versions: { '1.0.0': { ...gnuOnly.versions['1.0.0'], 'stockroom-1.0.0-x86_64-unknown-linux-musl.tar.gz': 'cd' } } };
  assert.equal(pickAsset(both, '1.0.0', linux).target, 'x86_64-unknown-linux-musl');
  assert.equal(pickAsset({ versions: {} }, '1.0.0', linux).pinned, undefined);
});

test('the action root is found upwards from the bundle and from the sources', () => {
  const root = path.resolve(import.meta.dirname, '..');
  assert.equal(findActionRoot(path.join(root, 'dist')), root);
  assert.equal(findActionRoot(path.join(root, 'src', 'lib')), root);
  assert.throws(() => findActionRoot(os.tmpdir()), /no action\.yml/);
});

/**
 * A release asset as scripts/dist.sh lays it out (stockroom-V-TARGET/ with
 * the binary), here with a script for a binary; an action root pinning it.
 */
function fixtureRelease(version) {
  const dir = tmp('tc-release-');
  const target = releaseTarget();
  const top = `stockroom-${version}-${target}`;
  fs.mkdirSync(path.join(dir, 'stage', top), { recursive: true });
  fs.writeFileSync(path.join(dir, 'stage', top, 'stockroom'), `#!/bin/sh\necho "stockroom ${version} (fixture)"\n`, { mode: 0o755 });
  fs.writeFileSync(path.join(dir, 'stage', top, 'LICENSE'), 'Apache-2.0\n');
  const asset = assetName(version, target);
  const tar = spawnSync('tar', ['-czf', path.join(dir, asset), '-C', path.join(dir, 'stage'), top]);
  assert.equal(tar.status, 0, String(tar.stderr));
  const body = fs.readFileSync(path.join(dir, asset));
  const sha = crypto.createHash('sha256').update(body).digest('hex');
  const root = path.join(dir, 'action');
  fs.mkdirSync(root);
  fs.writeFileSync(path.join(root, 'action.yml'), 'name: fixture\n');
  fs.writeFileSync(path.join(root, 'checksums.json'), JSON.stringify({ default_version: version, versions: { [version]: { [asset]: sha } } }));
  return { dir, target, asset, body, sha, root };
}

/** Serves one body at `route` on 127.0.0.1 (404 elsewhere); counts the requests. */
async function serveOne(route, body) {
  const requests = [];
  const server = http.createServer((req, res) => {
    requests.push(req.url);
    if (req.url === route) res.writeHead(200, { 'content-type': 'application/gzip' }).end(body);
    else res.writeHead(404).end('not found');
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const close = () => new Promise((resolve) => server.close(resolve));
  return { base: `http://127.0.0.1:${server.address().port}/releases/download`, requests, close };
}

test('install: a pinned asset is downloaded, verified, cached; the cache serves the next job', async () => {
  const version = '1.2.3';
  const rel = fixtureRelease(version);
  const server = await serveOne(`/releases/download/v${version}/${rel.asset}`, rel.body);
  const runnerTemp = path.join(rel.dir, 'runner-temp');
  const toolCache = path.join(rel.dir, 'tool-cache');
  fs.mkdirSync(runnerTemp);
  try {
    await withEnv({ RUNNER_TEMP: runnerTemp, RUNNER_TOOL_CACHE: toolCache }, async () => {
      const first = await installRelease({ version: '', downloadUrl: server.base, root: rel.root });
      const cachedDir = path.join(toolCache, TOOL, version, rel.target);
      assert.deepEqual(first, { path: path.join(cachedDir, 'stockroom'), version, source: 'download' });
      assert.ok(fs.existsSync(`${cachedDir}.complete`), 'tool-cache marks the copy complete');
      assert.equal(fs.readFileSync(path.join(cachedDir, VERIFIED_MARKER), 'utf8').trim(), rel.sha);
      assert.match(spawnSync(first.path, { encoding: 'utf8' }).stdout, /stockroom 1\.2\.3 \(fixture\)/);
      assert.deepEqual(fs.readdirSync(runnerTemp), [], 'the download and the unpacked tree are cleaned up');

      const second = await installRelease({ version, downloadUrl: server.base, root: rel.root });
      assert.equal(second.source, 'cache');
      assert.equal(server.requests.length, 1, 'a verified copy is not downloaded again');

      // A cached copy verified against another pin (an older action release
      // pinning a different asset) is not trusted: downloaded again.
      fs.writeFileSync(path.join(cachedDir, VERIFIED_MARKER), `${'0'.repeat(64)}\n`);
      const third = await installRelease({ version, downloadUrl: server.base, root: rel.root });
      assert.equal(third.source, 'download');
      assert.equal(server.requests.length, 2);
    });
  } finally {
    await server.close();
  }
});

test('install: a checksum mismatch fails and leaves nothing unpacked, cached or downloaded', async () => {
  const version = '1.2.4';
  const rel = fixtureRelease(version);
  const tampered = Buffer.concat([rel.body, Buffer.from('x')]);
  const server = await serveOne(`/releases/download/v${version}/${rel.asset}`, tampered);
  const runnerTemp = path.join(rel.dir, 'runner-temp');
  const toolCache = path.join(rel.dir, 'tool-cache');
  fs.mkdirSync(runnerTemp);
  try {
    await withEnv({ RUNNER_TEMP: runnerTemp, RUNNER_TOOL_CACHE: toolCache }, async () => {
      await assert.rejects(
        installRelease({ version, downloadUrl: server.base, root: rel.root }),
        new RegExp(`checksum mismatch for ${server.base}/v${version}/${rel.asset}: expected sha256 ${rel.sha}, got [0-9a-f]{64}\\. The file was not used\\.`),
      );
      assert.deepEqual(fs.readdirSync(runnerTemp), []);
      assert.equal(fs.existsSync(path.join(toolCache, TOOL)), false);
    });
  } finally {
    await server.close();
  }
});

test('install: refuses unpinned versions, unusable URLs and missing assets, naming each', async () => {
  const version = '1.2.5';
  const rel = fixtureRelease(version);
  const server = await serveOne('/nothing-here', Buffer.from(''));
  const runnerTemp = path.join(rel.dir, 'runner-temp');
  fs.mkdirSync(runnerTemp);
  try {
    await withEnv({ RUNNER_TEMP: runnerTemp, RUNNER_TOOL_CACHE: path.join(rel.dir, 'tc') }, async () => {
      await assert.rejects(
        installRelease({ version: '9.9.9', downloadUrl: server.base, root: rel.root }),
        /no checksum is pinned for stockroom-9\.9\.9-.*versions this action release pins: 1\.2\.5/,
      );
      await assert.rejects(
        installRelease({ version, downloadUrl: 'https://github.com//releases/download', root: rel.root }),
        /is not usable \(a local action has no release repository\)/,
      );
      await assert.rejects(
        installRelease({ version, downloadUrl: server.base, root: rel.root }),
        new RegExp(`downloading ${server.base}/v${version}/${rel.asset} failed: Unexpected HTTP response: 404`),
      );
      fs.writeFileSync(path.join(rel.root, 'checksums.json'), JSON.stringify({ default_version: null, versions: {} }));
      await assert.rejects(installRelease({ version: '', downloadUrl: server.base, root: rel.root }), /this action release pins none/);
      assert.deepEqual(server.requests, [`/releases/download/v${version}/${rel.asset}`], 'only the pinned asset was ever asked for');
    });
  } finally {
    await server.close();
  }
});
