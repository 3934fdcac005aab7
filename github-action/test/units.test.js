'use strict';
// The pieces that need no sidecar: the file-command protocol, the outcome
// mapping, the summary.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const wf = require('../src/lib/workflow');
const { outcomeFor, commonArgs, sidecarEnv } = require('../src/lib/sidecar');
const { renderSummary } = require('../src/lib/summary');
const { releaseTarget, pickAsset } = require('../src/lib/install');

test('environment files round-trip multi-line values through heredocs', () => {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'wf-')), 'env');
  fs.writeFileSync(file, 'PLAIN=a=b\n');
  const env = { GITHUB_ENV: file };
  wf.exportVariable('MULTI', 'line 1\nline 2', env);
  wf.exportVariable('PLAIN', 'later wins', env);
  const parsed = wf.parseFileCommands(fs.readFileSync(file, 'utf8'));
  assert.equal(parsed.get('MULTI'), 'line 1\nline 2');
  assert.equal(parsed.get('PLAIN'), 'later wins');
  assert.throws(() => wf.parseFileCommands('X<<EOF\nno end\n'), /unterminated heredoc/);
});

test('inputs keep hyphens and ignore surrounding blanks', () => {
  assert.equal(wf.getInput('shard-index', { 'INPUT_SHARD-INDEX': ' 2 ' }), '2');
  assert.equal(wf.getInput('job-status', {}), '');
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
