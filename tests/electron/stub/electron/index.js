// A stand-in for the `electron` module, so that electron-updater's own code
// runs under plain node in tests: an `app` with a version and paths, and
// `net.request` on node's http/https (what Electron's net module offers
// the updater: a request that emits "response", honouring manual redirects
// by handing the 3xx response to the updater, which follows it itself).
"use strict";
const { EventEmitter } = require("events");
const http = require("http");
const https = require("https");
const os = require("os");
const path = require("path");

const home = process.env.UPDATER_HOME || os.tmpdir();
// Where a packaged app keeps app-update.yml (check.js writes one there).
process.resourcesPath = process.resourcesPath || home;
const app = Object.assign(new EventEmitter(), {
  getVersion: () => process.env.APP_VERSION,
  getName: () => process.env.APP_NAME || "app",
  isPackaged: true,
  getAppPath: () => home,
  getPath: (name) => path.join(home, name),
  whenReady: () => Promise.resolve(),
  isReady: () => true,
  quit: () => {},
  relaunch: () => {},
});

function request(options) {
  const { redirect, session, ...rest } = options;
  const lib = rest.protocol === "https:" ? https : http;
  const req = lib.request(rest);
  return req;
}

module.exports = {
  app,
  net: { request },
  session: { fromPartition: () => ({}) },
  autoUpdater: new EventEmitter(),
  Notification: class { show() {} },
};
