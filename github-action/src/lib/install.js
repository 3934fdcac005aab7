'use strict';
// Finds the stockroom binary: the `binary` input, else `stockroom` on PATH,
// else the release asset for this runner, verified against the checksum this
// action release pins (checksums.json at the action's root).

const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const { spawnSync } = require('node:child_process');

// dist/main.js and src/lib/install.js sit at different depths: look upwards.
function findActionRoot(start = __dirname) {
  for (let dir = start; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'action.yml'))) return dir;
    if (path.dirname(dir) === dir) return path.resolve(__dirname, '..');
  }
}
const ACTION_ROOT = findActionRoot();
const EXE = process.platform === 'win32' ? 'stockroom.exe' : 'stockroom';

/**
 * The Rust target triples of the release assets that run on a runner, best
 * first: Linux releases are static musl builds; a static glibc build
 * (scripts/dist.sh where the musl target is not installed) runs as well.
 */
function releaseTargets(platform = process.platform, arch = process.arch) {
  const targets = {
    'linux-x64': ['x86_64-unknown-linux-musl', 'x86_64-unknown-linux-gnu'],
    'linux-arm64': ['aarch64-unknown-linux-musl', 'aarch64-unknown-linux-gnu'],
    'darwin-x64': ['x86_64-apple-darwin'],
    'darwin-arm64': ['aarch64-apple-darwin'],
  };
  const found = targets[`${platform}-${arch}`];
  if (!found) {
    throw new Error(
      `no stockroom release is built for ${platform}/${arch}; build it from source and pass its path as the \`binary\` input`,
    );
  }
  return found;
}

/** The preferred release target for a runner. */
function releaseTarget(platform = process.platform, arch = process.arch) {
  return releaseTargets(platform, arch)[0];
}

/** The first of `targets` whose asset of `version` the table pins, else the first target, unpinned. */
function pickAsset(table, version, targets) {
  const pins = (table.versions && table.versions[version]) || {};
  const target = targets.find((t) => pins[assetName(version, t)]) || targets[0];
  const asset = assetName(version, target);
  return { target, asset, pinned: pins[asset] };
}

function assetName(version, target) {
  return `stockroom-${version}-${target}.tar.gz`;
}

function loadChecksums(root = ACTION_ROOT) {
  const file = path.join(root, 'checksums.json');
  return { file, table: JSON.parse(fs.readFileSync(file, 'utf8')) };
}

function isExecutable(file) {
  try {
    const stat = fs.statSync(file);
    if (!stat.isFile()) return false;
    if (process.platform === 'win32') return true;
    fs.accessSync(file, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function findOnPath(name, pathVar = process.env.PATH || '') {
  for (const dir of pathVar.split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return null;
}

function sha256(buffer) {
  return crypto.createHash('sha256').update(buffer).digest('hex');
}

async function download(url) {
  const response = await fetch(url, { redirect: 'follow' });
  if (!response.ok) {
    throw new Error(`downloading ${url} failed: HTTP ${response.status} ${response.statusText}`);
  }
  return Buffer.from(await response.arrayBuffer());
}

function findFile(dir, name) {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isFile() && entry.name === name) return full;
    if (entry.isDirectory()) {
      const found = findFile(full, name);
      if (found) return found;
    }
  }
  return null;
}

/**
 * Downloads, verifies and unpacks the release asset; returns the binary's path.
 * A checksum mismatch or a version without a pinned checksum is an error:
 * the action never runs an unverified binary.
 */
async function installRelease({ version, downloadUrl, installRoot, root = ACTION_ROOT, log = () => {} }) {
  const { file: checksumFile, table } = loadChecksums(root);
  const wanted = version || table.default_version;
  if (!wanted) {
    throw new Error(
      `no stockroom version to download: this action release pins none in ${checksumFile}. ` +
        'Put stockroom on PATH, or pass `binary` (a path) or `version` (a pinned release).',
    );
  }
  const { target, asset, pinned } = pickAsset(table, wanted, releaseTargets());
  if (!pinned) {
    const known = Object.keys(table.versions || {}).join(', ') || 'none';
    throw new Error(
      `no checksum is pinned for ${asset} (versions this action release pins: ${known}); ` +
        'use a pinned version, or pass `binary`.',
    );
  }
  const base = (downloadUrl || '').replace(/\/+$/, '');
  if (!/^https?:\/\/[^/]+\/.+/.test(base) || /\/\/releases\/download$/.test(base)) {
    throw new Error(
      `the download URL ${JSON.stringify(downloadUrl)} is not usable (a local action has no release repository); ` +
        'pass `download-url`, `binary`, or put stockroom on PATH.',
    );
  }
  const dir = path.join(installRoot, 'stockroom', wanted, target);
  const cached = path.join(dir, EXE);
  const marker = path.join(dir, '.verified');
  if (isExecutable(cached) && fs.existsSync(marker) && fs.readFileSync(marker, 'utf8').trim() === pinned) {
    log(`stockroom ${wanted}: using the verified copy in ${dir}`);
    return { path: cached, version: wanted, source: 'cache' };
  }
  const url = `${base}/v${wanted}/${asset}`;
  log(`stockroom ${wanted}: downloading ${url}`);
  const body = await download(url);
  const actual = sha256(body);
  if (actual !== pinned) {
    throw new Error(
      `checksum mismatch for ${url}: expected sha256 ${pinned}, got ${actual}. The file was not used.`,
    );
  }
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const archive = path.join(dir, asset);
  fs.writeFileSync(archive, body);
  const tar = spawnSync('tar', ['-xzf', archive, '-C', dir], { encoding: 'utf8' });
  if (tar.error || tar.status !== 0) {
    throw new Error(`unpacking ${asset} failed: ${tar.error ? tar.error.message : tar.stderr.trim()}`);
  }
  fs.rmSync(archive);
  const found = findFile(dir, EXE);
  if (!found) throw new Error(`${asset} holds no ${EXE}`);
  if (found !== cached) fs.renameSync(found, cached);
  fs.chmodSync(cached, 0o755);
  fs.writeFileSync(marker, `${pinned}\n`);
  return { path: cached, version: wanted, source: 'download' };
}

/** The binary to use, in the order: `binary` input, PATH, verified download. */
async function resolveBinary({ binary, version, downloadUrl, installRoot, env = process.env, root, log }) {
  if (binary) {
    const resolved = path.resolve(binary);
    if (!isExecutable(resolved)) {
      throw new Error(`the \`binary\` input ${binary} is not an executable file`);
    }
    return { path: resolved, source: 'input' };
  }
  const onPath = findOnPath(EXE, env.PATH);
  if (onPath) return { path: onPath, source: 'path' };
  return installRelease({ version, downloadUrl, installRoot, root, log });
}

module.exports = { releaseTarget, releaseTargets, pickAsset, assetName, findOnPath, resolveBinary, installRelease, sha256 };
