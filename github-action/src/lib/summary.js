// The step summary. It names datasets by id, type and state only: their data
// may hold secrets, and the summary is not masked.

const VERDICT = {
  passed: 'passed → released',
  failed: 'failed → quarantined',
  cancelled: 'cancelled → quarantined',
};

const cell = (value) => String(value).replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');

export function datasetRows(datasetsFile) {
  if (!datasetsFile || typeof datasetsFile.datasets !== 'object' || datasetsFile.datasets === null) return [];
  const rows = [];
  for (const [name, value] of Object.entries(datasetsFile.datasets)) {
    const list = Array.isArray(value) ? value : [value];
    list.forEach((dataset, index) => {
      const label = Array.isArray(value) ? `${name}[${index}]` : name;
      rows.push(`| \`${cell(label)}\` | ${cell(dataset.type)}/${cell(dataset.state)} | \`${cell(dataset.id)}\` |`);
    });
  }
  return rows;
}

/**
 * Markdown for the step summary.
 * `datasetsFile` is the parsed §4 JSON (or null); `outcome` the sidecar's;
 * `note` says when the datasets may not have been settled as the verdict says.
 */
export function renderSummary({ leaseId, shard, outcome, datasetsFile, exitCode, command, note }) {
  const lines = ['### Stockroom datasets', ''];
  lines.push('| | |', '|---|---|');
  if (leaseId) lines.push(`| lease | \`${cell(leaseId)}\` |`);
  if (shard && shard.total) lines.push(`| shard | ${cell(shard.index)} of ${cell(shard.total)} (0-based) |`);
  if (command) lines.push(`| command | \`${cell(command)}\` → exit ${cell(exitCode)} |`);
  if (outcome) lines.push(`| outcome | **${cell(VERDICT[outcome] || outcome)}** |`);
  lines.push('');
  const rows = datasetRows(datasetsFile);
  if (rows.length) {
    lines.push('| dataset | type/state | id |', '|---|---|---|', ...rows, '');
  }
  if (note) lines.push(`> ${note}`, '');
  return `${lines.join('\n')}\n`;
}
