'use strict';
// The GitHub Actions workflow-command protocol, implemented directly so the
// action has no runtime dependencies: stdout commands (`::add-mask::`,
// `::error::`) and the environment files (GITHUB_ENV, GITHUB_OUTPUT,
// GITHUB_STATE, GITHUB_PATH, GITHUB_STEP_SUMMARY).

const fs = require('node:fs');
const os = require('node:os');
const crypto = require('node:crypto');

/** The value of input `name` (INPUT_<NAME>, spaces as `_`, hyphens kept), trimmed. */
function getInput(name, env = process.env) {
  const key = `INPUT_${name.replace(/ /g, '_').toUpperCase()}`;
  return (env[key] || '').trim();
}

/** A value saved by the main step with saveState, read back in the post step. */
function getState(name, env = process.env) {
  return env[`STATE_${name}`] || '';
}

function escapeData(value) {
  return String(value).replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}

function escapeProperty(value) {
  return escapeData(value).replace(/:/g, '%3A').replace(/,/g, '%2C');
}

function issue(command, message = '', properties = {}) {
  const props = Object.entries(properties)
    .filter(([, v]) => v !== undefined && v !== '')
    .map(([k, v]) => `${k}=${escapeProperty(v)}`)
    .join(',');
  process.stdout.write(`::${command}${props ? ` ${props}` : ''}::${escapeData(message)}${os.EOL}`);
}

/** Masks a secret in every later log line. Must come before the value is printed anywhere. */
function addMask(value) {
  if (value) issue('add-mask', value);
}

const info = (message) => process.stdout.write(`${message}${os.EOL}`);
const warning = (message) => issue('warning', message);
const error = (message) => issue('error', message);
const group = (title) => issue('group', title);
const endGroup = () => issue('endgroup');

/**
 * Appends `key<<DELIMITER / value / DELIMITER` to the file named by envVar,
 * the multi-line-safe form every environment file accepts.
 */
function appendFileCommand(envVar, key, value, env = process.env) {
  const file = env[envVar];
  if (!file) {
    throw new Error(`${envVar} is not set: this must run as a GitHub Actions step (or a test that sets ${envVar})`);
  }
  const text = String(value);
  const delimiter = `ghadelimiter_${crypto.randomUUID()}`;
  if (key.includes(delimiter) || text.includes(delimiter)) {
    throw new Error(`refusing to write ${key}: the value contains the delimiter`);
  }
  fs.appendFileSync(file, `${key}<<${delimiter}${os.EOL}${text}${os.EOL}${delimiter}${os.EOL}`, 'utf8');
}

const setOutput = (name, value, env) => appendFileCommand('GITHUB_OUTPUT', name, value, env);
const saveState = (name, value, env) => appendFileCommand('GITHUB_STATE', name, value, env);
const exportVariable = (name, value, env) => appendFileCommand('GITHUB_ENV', name, value, env);

function addPath(dir, env = process.env) {
  if (!env.GITHUB_PATH) throw new Error('GITHUB_PATH is not set');
  fs.appendFileSync(env.GITHUB_PATH, `${dir}${os.EOL}`, 'utf8');
}

function appendSummary(markdown, env = process.env) {
  if (!env.GITHUB_STEP_SUMMARY) return false;
  fs.appendFileSync(env.GITHUB_STEP_SUMMARY, markdown, 'utf8');
  return true;
}

/**
 * Parses an environment file as the runner does: `NAME=value` lines and
 * `NAME<<DELIM` heredocs. Later entries win, as they do on the runner.
 */
function parseFileCommands(text) {
  const result = new Map();
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line === '') continue;
    const heredoc = line.indexOf('<<');
    const equals = line.indexOf('=');
    if (heredoc > 0 && (equals < 0 || heredoc < equals)) {
      const key = line.slice(0, heredoc);
      const delimiter = line.slice(heredoc + 2);
      const value = [];
      i++;
      while (i < lines.length && lines[i] !== delimiter) value.push(lines[i++]);
      if (i >= lines.length) throw new Error(`unterminated heredoc for ${key} (delimiter ${delimiter})`);
      result.set(key, value.join('\n'));
    } else if (equals > 0) {
      result.set(line.slice(0, equals), line.slice(equals + 1));
    } else {
      throw new Error(`malformed line in environment file: ${JSON.stringify(line)}`);
    }
  }
  return result;
}

module.exports = {
  getInput,
  getState,
  escapeData,
  issue,
  addMask,
  info,
  warning,
  error,
  group,
  endGroup,
  setOutput,
  saveState,
  exportVariable,
  addPath,
  appendSummary,
  parseFileCommands,
};
