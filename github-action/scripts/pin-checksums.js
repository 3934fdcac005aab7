#!/usr/bin/env node
// Pins release assets into checksums.json: run by the release job before it
// tags the action, so the action only ever downloads what it was built with.
//   node scripts/pin-checksums.js VERSION ASSET... [--default] [--file checksums.json]

import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
let file = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'checksums.json');
let makeDefault = false;
const positional = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--default') makeDefault = true;
  else if (args[i] === '--file') file = args[++i];
  else positional.push(args[i]);
}
const [version, ...assets] = positional;
if (!version || assets.length === 0) {
  console.error('usage: pin-checksums.js VERSION ASSET... [--default] [--file checksums.json]');
  process.exit(64);
}
const table = JSON.parse(fs.readFileSync(file, 'utf8'));
table.versions = table.versions || {};
table.versions[version] = table.versions[version] || {};
for (const asset of assets) {
  const digest = crypto.createHash('sha256').update(fs.readFileSync(asset)).digest('hex');
  table.versions[version][path.basename(asset)] = digest;
  console.log(`${digest}  ${path.basename(asset)}`);
}
if (makeDefault) table.default_version = version;
fs.writeFileSync(file, `${JSON.stringify(table, null, 2)}\n`);
