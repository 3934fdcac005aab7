// Post step (post-if: always()): release the lease if the job succeeded,
// quarantine it if it failed or was cancelled, and write the step summary.
// The runner evaluates the inputs again for this step, so `job-status`
// (default ${{ job.status }}) holds the job's outcome so far.

import fs from 'node:fs';
import * as core from '@actions/core';
import * as sidecar from './lib/sidecar.js';
import { renderSummary } from './lib/summary.js';

function summarySize() {
  try {
    return fs.statSync(process.env.GITHUB_STEP_SUMMARY).size;
  } catch {
    return -1;
  }
}

/** Appends to the step summary; a runner without one (or a broken file) only costs a warning. */
async function appendSummary(markdown) {
  if (!process.env.GITHUB_STEP_SUMMARY) return;
  try {
    await core.summary.addRaw(markdown).write();
  } catch (err) {
    core.warning(`stockroom: could not write the step summary: ${err.message}`);
  }
}

async function post() {
  const mode = core.getState('mode');
  if (!mode) {
    core.info('stockroom: the main step leased nothing; nothing to release');
    return;
  }

  if (mode === 'run') {
    const exitCode = Number(core.getState('exit_code') || NaN);
    const outcome = exitCode === 0 ? 'passed' : Number.isNaN(exitCode) ? '' : exitCode > 128 ? 'cancelled' : 'failed';
    await appendSummary(
      renderSummary({
        command: core.getState('command'),
        exitCode: Number.isNaN(exitCode) ? 'none (the step did not finish)' : exitCode,
        outcome,
        note: 'stockroom run settled the lease itself when the command ended.',
      }),
    );
    return;
  }

  if (core.getState('started') !== 'true') {
    core.info('stockroom: `stockroom start` did not succeed; nothing to release');
    return;
  }

  const jobStatus = core.getInput('job-status');
  let outcome = sidecar.outcomeFor(jobStatus);
  if (!outcome) {
    core.warning(`stockroom: unknown job status ${JSON.stringify(jobStatus)}; quarantining as failed`);
    outcome = 'failed';
  }

  // Read before `stop`, which may remove the file.
  const datasetsFile = sidecar.readDatasetsFile(core.getState('datasets_file'));
  const token = core.getInput('token');
  if (token) core.setSecret(token);
  const args = [
    ...sidecar.commonArgs({ pool: core.getInput('pool'), stateDir: core.getState('state_dir') }),
    'stop',
    '--outcome',
    outcome,
  ];
  const summaryBefore = summarySize();
  const code = await sidecar.runSidecar(core.getState('binary'), args, sidecar.sidecarEnv(token));
  // `stockroom stop` writes its own summary on GitHub (with each dataset's
  // status after the release); add ours only when it did not.
  if (summarySize() === summaryBefore) {
    await appendSummary(
      renderSummary({
        leaseId: core.getState('lease_id'),
        shard: datasetsFile && datasetsFile.shard,
        outcome,
        datasetsFile,
        note: code === 0 ? '' : `stockroom stop failed (${sidecar.describeExit(code)}); the pool quarantines the lease when it expires.`,
      }),
    );
  }
  if (code !== 0) {
    core.setFailed(
      `stockroom stop failed (${sidecar.describeExit(code)}); the lease expires without heartbeats and the pool quarantines it`,
    );
  }
}

post().catch((err) => core.setFailed(err.message));
