// Drives electron-updater's own DebUpdater (generic provider) against a
// gateway: check for an update, download it (electron-updater verifies its
// SHA-512), and print what it saw as JSON. Inputs come from the
// environment: FEED (the generic provider's URL), API_KEY, APP_VERSION,
// UPDATER_HOME (a scratch directory).
//
// DIFFERENTIAL=1: electron-updater's NsisUpdater instead, told (through
// the test options electron-builder's own tests use) that it runs on
// Windows and must download differentially — from the installed
// installer (XDG_CACHE_HOME/tollgate-check-updater/installer.exe, put
// there by the test) and the two versions' blockmaps, asking the server
// for the changed blocks only. Without the test options a failed
// differential download silently falls back to a full one; with them it
// fails the run.
"use strict";
const fs = require("fs");
const path = require("path");
const { DebUpdater, NsisUpdater } = require("electron-updater");

async function main() {
  // What electron-builder puts next to a packaged app: the feed and the
  // cache directory's name.
  const config = `provider: generic\nurl: ${process.env.FEED}\nupdaterCacheDirName: tollgate-check-updater\n`;
  fs.writeFileSync(path.join(process.env.UPDATER_HOME, "app-update.yml"), config);
  const differential = process.env.DIFFERENTIAL === "1";
  const Updater = differential ? NsisUpdater : DebUpdater;
  const updater = new Updater({ provider: "generic", url: process.env.FEED });
  if (differential) {
    updater._testOnlyOptions = { platform: "win32", isUseDifferentialDownload: true };
    // The provider is made with the platform in force: again, now.
    updater.setFeedURL({ provider: "generic", url: process.env.FEED });
  }
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
