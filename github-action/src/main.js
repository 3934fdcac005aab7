'use strict';
// Main step: find or install stockroom, then either lease for the rest of the
// job (`stockroom start`, variables through GITHUB_ENV, masks first) or wrap
// the `run` input with `stockroom run`.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const wf = require('./lib/workflow');
const { resolveBinary, findOnPath } = require('./lib/install');
const sidecar = require('./lib/sidecar');

function readInputs(env = process.env) {
  return {
    manifest: wf.getInput('manifest', env),
    pool: wf.getInput('pool', env),
    token: wf.getInput('token', env),
    shardIndex: wf.getInput('shard-index', env),
    shardTotal: wf.getInput('shard-total', env),
    run: wf.getInput('run', env),
    version: wf.getInput('version', env).replace(/^v/, ''),
    binary: wf.getInput('binary', env),
    downloadUrl: wf.getInput('download-url', env),
  };
}

function leaseFromEnvFile(file) {
  if (!file || !fs.existsSync(file)) return {};
  const vars = wf.parseFileCommands(fs.readFileSync(file, 'utf8'));
  return { leaseId: vars.get('STOCKROOM_LEASE_ID') || '', datasetsFile: vars.get('STOCKROOM_DATASETS_FILE') || '' };
}

async function main() {
  const inputs = readInputs();
  // Before anything can print it.
  wf.addMask(inputs.token);

  const runnerTemp = process.env.RUNNER_TEMP || os.tmpdir();
  const installed = await resolveBinary({
    binary: inputs.binary,
    version: inputs.version,
    downloadUrl: inputs.downloadUrl,
    installRoot: process.env.RUNNER_TOOL_CACHE || runnerTemp,
    log: wf.info,
  });
  wf.info(`stockroom: using ${installed.path} (${installed.source})`);
  if (installed.source === 'download' || installed.source === 'cache') wf.addPath(path.dirname(installed.path));

  const stateDir = sidecar.mkStateDir(runnerTemp);
  wf.saveState('binary', installed.path);
  wf.saveState('state_dir', stateDir);

  const args = sidecar.commonArgs({ ...inputs, stateDir });
  const env = sidecar.sidecarEnv(inputs.token);

  if (inputs.run) {
    wf.saveState('mode', 'run');
    wf.saveState('command', inputs.run);
    const command = sidecar.shellCommand(inputs.run, findOnPath);
    const code = await sidecar.runSidecar(installed.path, [...args, 'run', '--', ...command], env);
    wf.saveState('exit_code', String(code));
    if (code !== 0) {
      wf.error(`stockroom run: ${sidecar.describeExit(code)}; the datasets were quarantined unless the manifest says on_failure = "release"`);
      process.exitCode = 1;
    }
    return;
  }

  wf.saveState('mode', 'start');
  const code = await sidecar.runSidecar(installed.path, [...args, 'start'], env);
  if (code !== 0) {
    wf.error(`stockroom start failed (${sidecar.describeExit(code)}); no datasets are held`);
    process.exitCode = 1;
    return;
  }
  wf.saveState('started', 'true');
  const lease = leaseFromEnvFile(process.env.GITHUB_ENV);
  if (!lease.leaseId) {
    wf.warning('stockroom start succeeded but wrote no STOCKROOM_LEASE_ID to GITHUB_ENV');
  }
  wf.setOutput('lease-id', lease.leaseId || '');
  wf.setOutput('datasets-file', lease.datasetsFile || '');
  wf.saveState('lease_id', lease.leaseId || '');
  wf.saveState('datasets_file', lease.datasetsFile || '');
}

main().catch((err) => {
  wf.error(err.message);
  process.exitCode = 1;
});
