// Test helpers: a real stockroom-pool on loopback, and the action's steps
// run the way the runner runs them (INPUT_*, STATE_*, environment files).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseFileCommands } from '../src/lib/envfile.js';

const ACTION_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const REPO_ROOT = path.resolve(ACTION_DIR, '..');
const BIN_DIR = process.env.STOCKROOM_BIN_DIR || path.join(REPO_ROOT, 'target', 'debug');
const STOCKROOM = path.join(BIN_DIR, 'stockroom');
const STOCKROOM_POOL = path.join(BIN_DIR, 'stockroom-pool');

function requireBinaries() {
  for (const bin of [STOCKROOM, STOCKROOM_POOL]) {
    if (!fs.existsSync(bin)) {
      throw new Error(`${bin} is missing: run \`cargo build -p stockroom -p stockroom-pool\` (or set STOCKROOM_BIN_DIR)`);
    }
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Starts stockroom-pool on 127.0.0.1:0 with a fresh SQLite store; resolves when it is listening. */
async function startPool(dir) {
  requireBinaries();
  const readyFile = path.join(dir, 'pool.ready');
  const log = fs.openSync(path.join(dir, 'pool.log'), 'a');
  const child = spawn(
    STOCKROOM_POOL,
    ['--listen', '127.0.0.1:0', '--store', `sqlite://${path.join(dir, 'pool.db')}`, '--ready-file', readyFile],
    { stdio: ['ignore', log, log], env: { ...process.env, STOCKROOM_LOG: process.env.STOCKROOM_LOG || 'info' } },
  );
  let exited = null;
  child.on('exit', (code, signal) => {
    exited = { code, signal };
  });
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (exited) {
      throw new Error(`stockroom-pool exited early (${JSON.stringify(exited)}):\n${fs.readFileSync(path.join(dir, 'pool.log'), 'utf8')}`);
    }
    if (fs.existsSync(readyFile)) {
      const text = fs.readFileSync(readyFile, 'utf8').trim();
      if (text) {
        const url = /^https?:\/\//.test(text) ? text.replace(/\/+$/, '') : `http://${text}`;
        return { url, child, stop: () => stopProcess(child) };
      }
    }
    await sleep(50);
  }
  child.kill('SIGKILL');
  throw new Error('stockroom-pool did not write its ready file within 30 s');
}

function stopProcess(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

async function api(pool, method, route, body) {
  const response = await fetch(`${pool.url}/api/v1${route}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${route}: HTTP ${response.status}: ${text}`);
  return text ? JSON.parse(text) : null;
}

/** Registers `count` customer/active datasets, each with a secret password. */
async function seedCustomers(pool, count, prefix) {
  const body = [];
  for (let i = 0; i < count; i++) {
    body.push({
      type: 'customer',
      state: 'active',
      attributes: { country: 'DE' },
      data: { customer_id: `${prefix}${i}`, email: `${prefix.toLowerCase()}${i}@shop.test`, password: `pw-${prefix}-${i}-s3cret` },
      secret_fields: ['password'],
      entities: [`customer:${prefix}${i}`],
    });
  }
  const answer = await api(pool, 'POST', '/datasets', body);
  return Array.isArray(answer) ? answer : answer.datasets || answer;
}

/** The datasets of one status, as returned by GET /datasets?status=. */
async function datasetsWithStatus(pool, status) {
  const answer = await api(pool, 'GET', `/datasets?status=${status}&limit=1000`);
  return Array.isArray(answer) ? answer : answer.datasets || [];
}

async function statusOf(pool, id) {
  const dataset = await api(pool, 'GET', `/datasets/${encodeURIComponent(id)}`);
  return dataset.status;
}

function writeManifest(dir, { type = 'customer', state = 'active', name = 'buyer' } = {}) {
  const file = path.join(dir, 'stockroom.toml');
  fs.writeFileSync(
    file,
    ['version = 1', 'lease_ttl = "60s"', 'acquire_timeout = "10s"', '', '[[dataset]]', `name = "${name}"`, `type = "${type}"`, `state = "${state}"`, ''].join('\n'),
  );
  return file;
}

/** One job's runner files, shared by its main and post steps as on a real runner. */
function makeJob(dir, { runId, job = 'e2e' }) {
  const jobDir = fs.mkdtempSync(path.join(dir, `job-${runId}-`));
  const files = {};
  for (const name of ['GITHUB_ENV', 'GITHUB_OUTPUT', 'GITHUB_STATE', 'GITHUB_PATH', 'GITHUB_STEP_SUMMARY']) {
    files[name] = path.join(jobDir, name.toLowerCase());
    fs.writeFileSync(files[name], '');
  }
  const runnerTemp = path.join(jobDir, 'runner-temp');
  fs.mkdirSync(runnerTemp);
  const baseEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME || os.homedir(),
    GITHUB_ACTIONS: 'true',
    CI: 'true',
    GITHUB_REPOSITORY: 'acme/shop',
    GITHUB_RUN_ID: String(runId),
    GITHUB_RUN_ATTEMPT: '1',
    GITHUB_JOB: job,
    GITHUB_SERVER_URL: 'https://github.example',
    GITHUB_REF: 'refs/heads/main',
    RUNNER_TEMP: runnerTemp,
    RUNNER_NAME: 'test-runner',
    ...files,
  };
  return { dir: jobDir, files, baseEnv, read: (name) => fs.readFileSync(files[name], 'utf8') };
}

function inputEnv(inputs) {
  const env = {};
  for (const [name, value] of Object.entries(inputs)) env[`INPUT_${name.toUpperCase()}`] = value;
  return env;
}

/** Runs one step script as the runner would; resolves to {code, stdout, stderr}. */
function runStep(script, env, { timeoutMs = 60_000, onSpawn } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${path.basename(script)} did not finish within ${timeoutMs} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`));
    }, timeoutMs);
    if (onSpawn) onSpawn(child);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** The main step, then the post step with STATE_* from the main step's GITHUB_STATE. */
async function runMain(job, inputs, { actionDir = ACTION_DIR, env = {} } = {}) {
  return runStep(path.join(actionDir, 'dist', 'main.cjs'), { ...job.baseEnv, ...env, ...inputEnv(inputs) });
}

async function runPost(job, inputs, { actionDir = ACTION_DIR, env = {} } = {}) {
  const state = {};
  for (const [key, value] of parseFileCommands(job.read('GITHUB_STATE'))) state[`STATE_${key}`] = value;
  return runStep(path.join(actionDir, 'dist', 'post.cjs'), { ...job.baseEnv, ...env, ...state, ...inputEnv(inputs) });
}

function describe(result) {
  return `exit ${result.code}${result.signal ? ` (${result.signal})` : ''}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`;
}

export {
  ACTION_DIR,
  REPO_ROOT,
  BIN_DIR,
  STOCKROOM,
  STOCKROOM_POOL,
  sleep,
  startPool,
  api,
  seedCustomers,
  datasetsWithStatus,
  statusOf,
  writeManifest,
  makeJob,
  runMain,
  runPost,
  runStep,
  describe,
  parseFileCommands,
};
