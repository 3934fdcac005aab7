// Finds the stockroom binary: the `binary` input, else `stockroom` on PATH,
// else the release asset for this runner, verified against the checksum this
// action release pins (checksums.json at the action's root). Downloading,
// unpacking and the runner's tool cache are @actions/tool-cache's.

import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import * as tc from '@actions/tool-cache';
import * as io from '@actions/io';

const EXE = process.platform === 'win32' ? 'stockroom.exe' : 'stockroom';
/** The tool's name in the runner's tool cache. */
export const TOOL = 'stockroom';
/** Beside the cached binary: the sha256 of the asset it came from. */
export const VERIFIED_MARKER = '.stockroom-asset.sha256';

/**
 * The action's root (where action.yml and checksums.json are): the first
 * directory upwards from `start` holding action.yml. The bundle (dist/) and
 * the sources (src/lib/) sit at different depths.
 */
export function findActionRoot(start) {
  for (let dir = path.resolve(start); ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'action.yml'))) return dir;
    if (path.dirname(dir) === dir) {
      throw new Error(`no action.yml in ${start} or above it: the action's files are incomplete`);
    }
  }
}

/**
 * The Rust target triples of the release assets that run on a runner, best
 * first: Linux releases are static musl builds; a static glibc build
 * (scripts/dist.sh where the musl target is not installed) runs as well.
 */
export function releaseTargets(platform = process.platform, arch = process.arch) {
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
export function releaseTarget(platform = process.platform, arch = process.arch) {
  return releaseTargets(platform, arch)[0];
}

export function assetName(version, target) {
  return `stockroom-${version}-${target}.tar.gz`;
}

/** The first of `targets` whose asset of `version` the table pins, else the first target, unpinned. */
export function pickAsset(table, version, targets) {
  const pins = (table.versions && table.versions[version]) || {};
  const target = targets.find((t) => pins[assetName(version, t)]) || targets[0];
  const asset = assetName(version, target);
  return { target, asset, pinned: pins[asset] };
}

export function loadChecksums(root) {
  const file = path.join(root, 'checksums.json');
  let table;
  try {
    table = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`cannot read the pinned checksums in ${file}: ${err.message}`, { cause: err });
  }
  return { file, table };
}

export function isExecutable(file) {
  try {
    if (!fs.statSync(file).isFile()) return false;
    if (process.platform !== 'win32') fs.accessSync(file, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export async function sha256File(file) {
  const hash = crypto.createHash('sha256');
  await pipeline(fs.createReadStream(file), hash);
  return hash.digest('hex');
}

/** The base URL of the assets, or an error saying why it cannot be one. */
function usableBase(downloadUrl) {
  const base = (downloadUrl || '').replace(/\/+$/, '');
  // A local action (`uses: ./github-action`) has no github.action_repository,
  // so the default comes out as SERVER//releases/download.
  if (!/^https?:\/\/[^/]+\/.+/.test(base) || /\/\/releases\/download$/.test(base)) {
    throw new Error(
      `the download URL ${JSON.stringify(downloadUrl)} is not usable (a local action has no release repository); ` +
        'pass `download-url`, `binary`, or put stockroom on PATH.',
    );
  }
  return base;
}

/** The verified copy of `version` for `target` in the tool cache, if its asset had the pinned checksum. */
function cachedCopy(version, target, pinned) {
  const dir = tc.find(TOOL, version, target);
  if (!dir) return null;
  const binary = path.join(dir, EXE);
  let recorded = '';
  try {
    recorded = fs.readFileSync(path.join(dir, VERIFIED_MARKER), 'utf8').trim();
  } catch {
    return null;
  }
  return recorded === pinned && isExecutable(binary) ? { dir, binary } : null;
}

/** The directory under `root` that holds the executable `name`. */
function dirHolding(root, name) {
  for (const entry of fs.readdirSync(root, { withFileTypes: true })) {
    const full = path.join(root, entry.name);
    if (entry.isFile() && entry.name === name) return root;
    if (entry.isDirectory()) {
      const found = dirHolding(full, name);
      if (found) return found;
    }
  }
  return null;
}

/**
 * Downloads, verifies and unpacks the release asset into the tool cache;
 * returns the binary's path. A checksum mismatch or a version without a
 * pinned checksum is an error: the action never unpacks, caches or runs an
 * unverified file.
 */
export async function installRelease({ version, downloadUrl, root, log = () => {} }) {
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
  const base = usableBase(downloadUrl);

  const cached = cachedCopy(wanted, target, pinned);
  if (cached) {
    log(`stockroom ${wanted}: using the verified copy in ${cached.dir}`);
    return { path: cached.binary, version: wanted, source: 'cache' };
  }

  const url = `${base}/v${wanted}/${asset}`;
  log(`stockroom ${wanted}: downloading ${url}`);
  let archive;
  try {
    archive = await tc.downloadTool(url);
  } catch (err) {
    throw new Error(`downloading ${url} failed: ${err.message}`, { cause: err });
  }
  let unpacked;
  try {
    const actual = await sha256File(archive);
    if (actual !== pinned) {
      throw new Error(`checksum mismatch for ${url}: expected sha256 ${pinned}, got ${actual}. The file was not used.`);
    }
    unpacked = await tc.extractTar(archive);
  } finally {
    await io.rmRF(archive);
  }
  try {
    const dir = dirHolding(unpacked, EXE);
    if (!dir) throw new Error(`${asset} holds no ${EXE}`);
    fs.writeFileSync(path.join(dir, VERIFIED_MARKER), `${pinned}\n`);
    const cachedDir = await tc.cacheDir(dir, TOOL, wanted, target);
    const binary = path.join(cachedDir, EXE);
    fs.chmodSync(binary, 0o755);
    return { path: binary, version: wanted, source: 'download' };
  } finally {
    await io.rmRF(unpacked);
  }
}

/** The binary to use, in the order: `binary` input, PATH, verified download. */
export async function resolveBinary({ binary, version, downloadUrl, root, log }) {
  if (binary) {
    const resolved = path.resolve(binary);
    if (!isExecutable(resolved)) {
      throw new Error(`the \`binary\` input ${binary} is not an executable file`);
    }
    return { path: resolved, source: 'input' };
  }
  const onPath = await io.which(EXE, false);
  if (onPath) return { path: onPath, source: 'path' };
  return installRelease({ version, downloadUrl, root, log });
}
