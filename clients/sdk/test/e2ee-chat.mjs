// A scriptable e2ee chat client for interop tests: logs in (registering
// first when asked), joins or creates an e2ee conversation, sends lines, and
// prints every event of interest as one JSON line on stdout.
//
//   node clients/sdk/test/e2ee-chat.mjs --server http://127.0.0.1:8080 --handle alice --password 'correct horse battery'
//        [--register] [--storage FILE] [--direct HANDLE | --group TITLE --members h1,h2 | --conversation ID]
//        [--send TEXT]... [--wait-for N] [--timeout SECONDS]
//
// Lines printed: {"event":"ready","user_id","device_id","conversation_id"},
// {"event":"sent","client_msg_id","seq"}, {"event":"message","seq","sender_id",
// "sender_device_id","type","body","e2ee":{...}}, {"event":"message_changed",...},
// {"event":"safety_number","user_id","number"}, {"event":"error","code","message"},
// and {"event":"done"}. With --stdin (and no --send), stdin lines are sent as
// messages. It exits after --wait-for messages from others
// (default: none, exit after the sends are acked) or --timeout (default 30 s).
import { readFileSync, writeFileSync, existsSync } from "node:fs";
import { createInterface } from "node:readline";
import { WebSocket } from "ws";
import { ParleyClient, MemoryStorage } from "../dist/esm/index.js";
import { E2EE } from "../dist/esm/e2ee/index.js";

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf("--" + name);
  return i >= 0 ? args[i + 1] : def;
};
const all = (name) => args.flatMap((a, i) => (a === "--" + name ? [args[i + 1]] : []));
const flag = (name) => args.includes("--" + name);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");

/** FileStorage: MemoryStorage written to a JSON file after each change, so a second run is the same device. */
class FileStorage extends MemoryStorage {
  constructor(file) {
    super();
    this.file = file;
    this.data = existsSync(file) ? JSON.parse(readFileSync(file, "utf8")) : {};
  }
  async get(k) {
    return this.data[k] === undefined ? undefined : structuredClone(this.data[k]);
  }
  async set(k, v) {
    this.data[k] = structuredClone(v);
    writeFileSync(this.file, JSON.stringify(this.data));
  }
  async delete(k) {
    delete this.data[k];
    writeFileSync(this.file, JSON.stringify(this.data));
  }
  async keys(p) {
    return Object.keys(this.data).filter((k) => k.startsWith(p));
  }
}

const server = opt("server", "http://127.0.0.1:8080");
const handle = opt("handle");
const password = opt("password", "correct horse battery staple");
const waitFor = Number(opt("wait-for", "0"));
const timeout = Number(opt("timeout", "30")) * 1000;
const storageFile = opt("storage");
const e2ee = new E2EE();
const client = new ParleyClient({ server, WebSocket, platform: "cli", storage: storageFile ? new FileStorage(storageFile) : new MemoryStorage(), e2ee });

const timer = setTimeout(() => {
  out({ event: "error", code: "timeout", message: "timed out" });
  process.exit(2);
}, timeout);

try {
  if (flag("register")) await client.register(handle, password).catch((e) => (e.code === "conflict" ? null : Promise.reject(e)));
  if (!(await client.restore())) await client.login(handle, password);
  let received = 0;
  let convId = opt("conversation");
  const show = (event) => ({ message: m }) => {
    if (convId && m.conversationId !== convId) return;
    out({ event, conversation_id: m.conversationId, seq: m.seq, sender_id: m.senderId, sender_device_id: m.senderDeviceId, type: m.type, body: m.body, e2ee: m.e2ee });
  };
  client.on("message", (e) => {
    show("message")(e);
    if (e.message.senderId !== client.session.userId && (!convId || e.message.conversationId === convId)) received++;
  });
  client.on("message_changed", show("message_changed"));
  client.on("e2ee_device_added", (e) => out({ event: "device_added", user_id: e.userId, device_id: e.deviceId }));
  client.on("e2ee_device_untrusted", (e) => out({ event: "device_untrusted", user_id: e.userId, device_id: e.deviceId, reason: e.reason }));
  await client.connect();
  await new Promise((r) => {
    const off = client.on("synced", () => (off(), r()));
  });
  // The SDK publishes this device's keys at ready without waiting; a run
  // that exits right after the sync must not cut that request short (the
  // server drops a write whose client has gone), or no one can seal to it.
  await e2ee.publish();
  if (!convId && opt("direct")) convId = (await client.createDirect((await client.findUser(opt("direct"))).id, { e2ee: true })).id;
  if (!convId && opt("group")) {
    const ids = [];
    for (const h of (opt("members") || "").split(",").filter(Boolean)) ids.push((await client.findUser(h)).id);
    convId = (await client.createGroup(opt("group"), ids, { e2ee: true })).id;
  }
  out({ event: "ready", user_id: client.session.userId, device_id: client.session.deviceId, conversation_id: convId || null });
  const conv = convId && client.conversation(convId);
  if (conv) for (const m of conv.members) if (m.userId !== client.session.userId) out({ event: "safety_number", user_id: m.userId, number: await e2ee.safetyNumber(m.userId) });
  let texts = all("send");
  if (!texts.length && !process.stdin.isTTY && flag("stdin")) {
    texts = [];
    for await (const line of createInterface({ input: process.stdin })) if (line) texts.push(line);
  }
  for (const t of texts) {
    const o = client.send(convId, t);
    const m = await o.acked;
    out({ event: "sent", client_msg_id: o.clientMsgId, seq: m.seq });
  }
  while (received < waitFor) await new Promise((r) => setTimeout(r, 50));
  out({ event: "done" });
  clearTimeout(timer);
  await client.close();
  process.exit(0);
} catch (e) {
  out({ event: "error", code: e.code || "error", message: e.message });
  process.exit(1);
}
