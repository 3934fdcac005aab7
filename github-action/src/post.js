'use strict';
// Post step (post-if: always()): release the lease if the job succeeded,
// quarantine it if it failed or was cancelled, and write the step summary.
// The runner evaluates the inputs again for this step, so `job-status`
// (default ${{ job.status }}) holds the job's outcome so far.

const fs = require('node:fs');
const wf = require('./lib/workflow');
const sidecar = require('./lib/sidecar');
const { renderSummary } = require('./lib/summary');

function summarySize() {
  try {
    return fs.statSync(process.env.GITHUB_STEP_SUMMARY).size;
  } catch {
    return -1;
  }
}

async function post() {
  const mode = wf.getState('mode');
  if (!mode) {
    wf.info('stockroom: the main step leased nothing; nothing to release');
    return;
  }

  if (mode === 'run') {
    const exitCode = Number(wf.getState('exit_code') || NaN);
    const outcome = exitCode === 0 ? 'passed' : Number.isNaN(exitCode) ? '' : exitCode > 128 ? 'cancelled' : 'failed';
    wf.appendSummary(
      renderSummary({
        command: wf.getState('command'),
        exitCode: Number.isNaN(exitCode) ? 'none (the step did not finish)' : exitCode,
        outcome,
        note: 'stockroom run settled the lease itself when the command ended.',
      }),
    );
    return;
  }

  if (wf.getState('started') !== 'true') {
    wf.info('stockroom: `stockroom start` did not succeed; nothing to release');
    return;
  }

  const jobStatus = wf.getInput('job-status');
  let outcome = sidecar.outcomeFor(jobStatus);
  if (!outcome) {
    wf.warning(`stockroom: unknown job status ${JSON.stringify(jobStatus)}; quarantining as failed`);
    outcome = 'failed';
  }

  // Read before `stop`, which may remove the file.
  const datasetsFile = sidecar.readDatasetsFile(wf.getState('datasets_file'));
  const token = wf.getInput('token');
  wf.addMask(token);
  const args = [
    ...sidecar.commonArgs({ pool: wf.getInput('pool'), stateDir: wf.getState('state_dir') }),
    'stop',
    '--outcome',
    outcome,
  ];
  const summaryBefore = summarySize();
  const code = await sidecar.runSidecar(wf.getState('binary'), args, sidecar.sidecarEnv(token));
  // `stockroom stop` writes its own summary on GitHub (with each dataset's
  // status after the release); add ours only when it did not.
  if (summarySize() === summaryBefore) {
    wf.appendSummary(
      renderSummary({
        leaseId: wf.getState('lease_id'),
        shard: datasetsFile && datasetsFile.shard,
        outcome,
        datasetsFile,
        note: code === 0 ? '' : `stockroom stop failed (${sidecar.describeExit(code)}); the pool quarantines the lease when it expires.`,
      }),
    );
  }
  if (code !== 0) {
    wf.error(`stockroom stop failed (${sidecar.describeExit(code)}); the lease expires without heartbeats and the pool quarantines it`);
    process.exitCode = 1;
  }
}

post().catch((err) => {
  wf.error(err.message);
  process.exitCode = 1;
});
