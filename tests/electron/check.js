// Drives electron-updater's own DebUpdater (generic provider) against a
// gateway: check for an update, download it (electron-updater verifies its
// SHA-512), and print what it saw as JSON. Inputs come from the
// environment: FEED (the generic provider's URL), API_KEY, APP_VERSION,
// UPDATER_HOME (a scratch directory).
"use strict";
const fs = require("fs");
const path = require("path");
const { DebUpdater } = require("electron-updater");

async function main() {
  // What electron-builder puts next to a packaged app: the feed and the
  // cache directory's name.
  const config = `provider: generic\nurl: ${process.env.FEED}\nupdaterCacheDirName: tollgate-check-updater\n`;
  fs.writeFileSync(path.join(process.env.UPDATER_HOME, "app-update.yml"), config);
  const updater = new DebUpdater({ provider: "generic", url: process.env.FEED });
  updater.autoDownload = false;
  updater.autoInstallOnAppQuit = false;
  updater.logger = null;
  updater.requestHeaders = { Authorization: `Bearer ${process.env.API_KEY}` };
  const result = await updater.checkForUpdates();
  const out = { available: result != null && result.isUpdateAvailable, info: result && result.updateInfo };
  if (out.available) {
    const files = await updater.downloadUpdate();
    out.downloaded = files;
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ error: String(e && (e.code || e.message)), stack: String(e && e.stack) }));
  process.exitCode = 1;
});
