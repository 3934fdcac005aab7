// How the action drives the `stockroom` CLI (docs/sidecar.md).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import * as io from '@actions/io';

/** GitHub's job.status → the sidecar's outcome. Anything unknown quarantines. */
export const OUTCOME_BY_JOB_STATUS = { success: 'passed', failure: 'failed', cancelled: 'cancelled' };

export function outcomeFor(jobStatus) {
  return OUTCOME_BY_JOB_STATUS[String(jobStatus || '').toLowerCase()];
}

/** What the sidecar's own exit codes (sysexits) mean, for the error annotation. */
const EXIT_MEANINGS = {
  64: 'usage error',
  65: 'the manifest is invalid',
  69: 'the pool is unreachable',
  70: 'internal error in stockroom',
  75: 'not enough stock became ready within acquire_timeout',
  77: 'the pool rejected the token',
  78: 'configuration error',
};

export function describeExit(code) {
  return EXIT_MEANINGS[code] ? `exit ${code}: ${EXIT_MEANINGS[code]}` : `exit ${code}`;
}

/** Global options shared by every subcommand. Empty inputs are left to the sidecar's own defaults. */
export function commonArgs({ manifest, pool, shardIndex, shardTotal, stateDir }) {
  const args = [];
  if (manifest) args.push('--manifest', manifest);
  if (pool) args.push('--pool', pool);
  if (shardIndex !== '' && shardIndex !== undefined) args.push('--shard-index', String(shardIndex));
  if (shardTotal !== '' && shardTotal !== undefined) args.push('--shard-total', String(shardTotal));
  if (stateDir) args.push('--state-dir', stateDir);
  return args;
}

/** The sidecar's environment: the step's, plus the token (never a flag). */
export function sidecarEnv(token, base = process.env) {
  const env = { ...base };
  // The runner hands every input to the step as INPUT_*; the sidecar needs none of them.
  for (const key of Object.keys(env)) if (key.startsWith('INPUT_')) delete env[key];
  if (token) env.STOCKROOM_TOKEN = token;
  return env;
}

/**
 * Runs the sidecar with the step's stdout/stderr, forwarding SIGINT/SIGTERM
 * (a cancelled run) so it can quarantine before the runner kills it.
 * Resolves to the exit code (128+N after death by signal N).
 */
export function runSidecar(binary, args, env) {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, { env, stdio: 'inherit' });
    const forward = (signal) => () => child.kill(signal);
    const handlers = { SIGINT: forward('SIGINT'), SIGTERM: forward('SIGTERM') };
    for (const [signal, handler] of Object.entries(handlers)) process.on(signal, handler);
    const detach = () => {
      for (const [signal, handler] of Object.entries(handlers)) process.off(signal, handler);
    };
    child.on('error', (err) => {
      detach();
      reject(new Error(`could not start ${binary}: ${err.message}`));
    });
    child.on('exit', (code, signal) => {
      detach();
      if (code !== null) resolve(code);
      else resolve(128 + (os.constants.signals[signal] || 0));
    });
  });
}

/** The shell that runs the `run` input: bash like GitHub's default, else sh. */
export async function shellCommand(command) {
  const bash = await io.which('bash', false);
  if (bash) return [bash, '--noprofile', '--norc', '-eo', 'pipefail', '-c', command];
  return ['sh', '-e', '-c', command];
}

/** The datasets file (§4) as {name: [datasets]}, or null when it cannot be read. */
export function readDatasetsFile(file) {
  if (!file) return null;
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch {
    return null;
  }
}

export function mkStateDir(root) {
  fs.mkdirSync(root, { recursive: true });
  return fs.mkdtempSync(path.join(root, 'stockroom-'));
}
