// Writes FILE.blockmap for FILE (argv[2]) in electron-builder's blockmap
// format (version 2: gzipped JSON, one entry "file" with each block's
// checksum and size), as electron-builder publishes next to an installer.
// electron-builder cuts blocks by content; fixed 64 KiB blocks are enough
// for a test whose new file changes bytes in place. electron-updater only
// compares checksums, so any digest does: SHA-256, base64.
"use strict";
const crypto = require("crypto");
const fs = require("fs");
const zlib = require("zlib");

const BLOCK = 64 * 1024;
const file = process.argv[2];
const data = fs.readFileSync(file);
const checksums = [];
const sizes = [];
for (let at = 0; at < data.length; at += BLOCK) {
  const block = data.subarray(at, Math.min(at + BLOCK, data.length));
  checksums.push(crypto.createHash("sha256").update(block).digest("base64"));
  sizes.push(block.length);
}
const map = { version: "2", files: [{ name: "file", offset: 0, checksums, sizes }] };
fs.writeFileSync(`${file}.blockmap`, zlib.gzipSync(JSON.stringify(map)));
