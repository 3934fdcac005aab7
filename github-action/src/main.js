// Main step: find or install stockroom, then either lease for the rest of the
// job (`stockroom start`, variables through GITHUB_ENV, masks first) or wrap
// the `run` input with `stockroom run`.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as core from '@actions/core';
import { findActionRoot, resolveBinary } from './lib/install.js';
import { parseFileCommands } from './lib/envfile.js';
import * as sidecar from './lib/sidecar.js';

export function readInputs() {
  return {
    manifest: core.getInput('manifest'),
    pool: core.getInput('pool'),
    token: core.getInput('token'),
    shardIndex: core.getInput('shard-index'),
    shardTotal: core.getInput('shard-total'),
    run: core.getInput('run'),
    version: core.getInput('version').replace(/^v/, ''),
    binary: core.getInput('binary'),
    downloadUrl: core.getInput('download-url'),
  };
}

/** What `stockroom start` wrote to GITHUB_ENV about the lease. */
function leaseFromEnvFile(file) {
  if (!file || !fs.existsSync(file)) return {};
  const vars = parseFileCommands(fs.readFileSync(file, 'utf8'));
  return { leaseId: vars.get('STOCKROOM_LEASE_ID') || '', datasetsFile: vars.get('STOCKROOM_DATASETS_FILE') || '' };
}

async function main() {
  const inputs = readInputs();
  // Before anything can print it.
  if (inputs.token) core.setSecret(inputs.token);

  // The runner sets both; a step run by hand gets them under the temp dir.
  const runnerTemp = process.env.RUNNER_TEMP || os.tmpdir();
  process.env.RUNNER_TEMP = runnerTemp;
  process.env.RUNNER_TOOL_CACHE = process.env.RUNNER_TOOL_CACHE || path.join(runnerTemp, 'tool-cache');

  const installed = await resolveBinary({
    binary: inputs.binary,
    version: inputs.version,
    downloadUrl: inputs.downloadUrl,
    root: findActionRoot(path.dirname(process.argv[1])),
    log: core.info,
  });
  core.info(`stockroom: using ${installed.path} (${installed.source})`);
  if (installed.source === 'download' || installed.source === 'cache') core.addPath(path.dirname(installed.path));

  const stateDir = sidecar.mkStateDir(runnerTemp);
  core.saveState('binary', installed.path);
  core.saveState('state_dir', stateDir);

  const args = sidecar.commonArgs({ ...inputs, stateDir });
  const env = sidecar.sidecarEnv(inputs.token);

  if (inputs.run) {
    core.saveState('mode', 'run');
    core.saveState('command', inputs.run);
    const command = await sidecar.shellCommand(inputs.run);
    const code = await sidecar.runSidecar(installed.path, [...args, 'run', '--', ...command], env);
    core.saveState('exit_code', String(code));
    if (code !== 0) {
      core.setFailed(
        `stockroom run: ${sidecar.describeExit(code)}; the datasets were quarantined unless the manifest says on_failure = "release"`,
      );
    }
    return;
  }

  core.saveState('mode', 'start');
  const code = await sidecar.runSidecar(installed.path, [...args, 'start'], env);
  if (code !== 0) {
    core.setFailed(`stockroom start failed (${sidecar.describeExit(code)}); no datasets are held`);
    return;
  }
  core.saveState('started', 'true');
  // Later steps' `stockroom status`, `extend` and `stop` find the lease here.
  core.exportVariable('STOCKROOM_STATE_DIR', stateDir);
  const lease = leaseFromEnvFile(process.env.GITHUB_ENV);
  if (!lease.leaseId) {
    core.warning('stockroom start succeeded but wrote no STOCKROOM_LEASE_ID to GITHUB_ENV');
  }
  core.setOutput('lease-id', lease.leaseId || '');
  core.setOutput('datasets-file', lease.datasetsFile || '');
  core.saveState('lease_id', lease.leaseId || '');
  core.saveState('datasets_file', lease.datasetsFile || '');
}

main().catch((err) => core.setFailed(err.message));
