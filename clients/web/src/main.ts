// Entry point of the browser client.
import { IndexedDBStorage, ParleyClient } from "@parley/client";
import { E2EE } from "@parley/client/e2ee";
import { App } from "./app";
import { registerServiceWorker } from "./push";

function deviceName(): string {
  const ua = navigator.userAgent;
  const browser = /Edg\//.test(ua) ? "Edge" : /Chrome\//.test(ua) ? "Chrome" : /Firefox\//.test(ua) ? "Firefox" : /Safari\//.test(ua) ? "Safari" : "Browser";
  const os = /Android/.test(ua) ? "Android" : /iPhone|iPad/.test(ua) ? "iOS" : /Mac OS X/.test(ua) ? "macOS" : /Windows/.test(ua) ? "Windows" : /Linux/.test(ua) ? "Linux" : "";
  return os ? `${browser} on ${os}` : browser;
}

const e2ee = new E2EE();
const client = new ParleyClient({
  server: location.origin,
  storage: new IndexedDBStorage("parley"),
  platform: "web",
  deviceName: deviceName(),
  // Every tab shares the tokens in IndexedDB: refresh under a cross-tab lock
  // so that a second tab adopts the rotation instead of reusing the old token.
  lock: navigator.locks ? (name, fn) => navigator.locks.request(name, fn) : undefined,
  // End-to-end encrypted conversations: this browser's device keys live in the same IndexedDB.
  e2ee,
});

const root = document.getElementById("app");
if (root) {
  void registerServiceWorker();
  void new App(root, client, e2ee).start();
}
