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

// Electron's net follows redirects itself unless asked `redirect: "manual"`
// (electron-updater's differential downloader relies on that for its
// multi-range requests); with "manual" the 3xx response reaches the
// updater, which follows it itself.
const MAX_REDIRECTS = 10;

function request(options, hops = 0) {
  const { redirect, session, ...rest } = options;
  const lib = rest.protocol === "https:" ? https : http;
  const req = lib.request(rest);
  if (redirect === "manual") {
    return req;
  }
  const emit = req.emit.bind(req);
  req.emit = (event, ...args) => {
    const res = args[0];
    if (event !== "response" || ![301, 302, 303, 307, 308].includes(res.statusCode) || !res.headers.location) {
      return emit(event, ...args);
    }
    res.resume();
    if (hops >= MAX_REDIRECTS) {
      return emit("error", new Error("too many redirects"));
    }
    const to = new URL(res.headers.location, `${rest.protocol}//${rest.hostname || rest.host}:${rest.port || ""}${rest.path}`);
    const next = request(
      { ...options, protocol: to.protocol, hostname: to.hostname, host: to.host, port: to.port, path: to.pathname + to.search },
      hops + 1,
    );
    next.on("response", (r) => emit("response", r));
    next.on("error", (e) => emit("error", e));
    next.end();
    return true;
  };
  return req;
}

module.exports = {
  app,
  net: { request },
  session: { fromPartition: () => ({}) },
  autoUpdater: new EventEmitter(),
  Notification: class { show() {} },
};
