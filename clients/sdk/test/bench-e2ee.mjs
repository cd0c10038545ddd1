// The cost of end-to-end encryption per message, in Node: encrypt (seal the
// content, sign, seal K to every recipient device with HPKE) and decrypt
// (open this device's key, check the signature, open the content) for a
// group of 10 and of 100 members with 2 devices each, with each X25519
// engine. Run after `npm run build -w sdk`:
//
//   node clients/sdk/test/bench-e2ee.mjs [rounds]
//
// Prints one JSON line per case (milliseconds per message, the median of
// `rounds` runs, default 20) and a table.
import * as c from "../dist/esm/e2ee/index.js";

const rounds = Number(process.argv[2]) || 20;
const text = (s) => new TextEncoder().encode(s);
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];

async function bench(engine, members) {
  c.useEngine(engine);
  const sender = c.newIdentity();
  const devices = [];
  for (let i = 0; i < members * 2 - 1; i++) {
    const hk = await c.newHpkeKey();
    devices.push({ deviceId: "01936f4e-7c20-7d31-9a44-" + String(i).padStart(12, "0"), keyId: 1, publicKey: hk.pub, priv: hk.priv });
  }
  const content = text(JSON.stringify({ v: 1, type: "text", body: "see you at 8, the usual place; bring the tickets" }));
  const enc = [];
  const dec = [];
  let last;
  for (let r = 0; r < rounds + 2; r++) {
    const ids = { conversationId: "01936f4e-8c2a-7b3d-9f10-2c4d5e6f7a8b", senderUserId: "01936f4e-7b19-7a2c-8e0f-1b3c4d5e6f70", senderDeviceId: "01936f4e-7c20-7d31-9a44-5e6f708192a3", clientMsgId: "bench-" + r };
    let t = performance.now();
    const k = crypto.getRandomValues(new Uint8Array(32));
    const ct = c.sealContent(k, content, c.contentAd(ids));
    const sig = c.sign(sender.priv, c.signatureInput(ids, c.SUITE, ct));
    const keys = await c.sealKeys(k, ids, devices);
    const te = performance.now() - t;
    const mine = devices[r % devices.length];
    const key = keys.find((x) => x.device_id === mine.deviceId);
    t = performance.now();
    const k2 = await c.openKey(mine.priv, c.unb64(key.enc), c.unb64(key.sealed), c.keyAad(ids.conversationId, ids.senderDeviceId, ids.clientMsgId, mine.deviceId, 1));
    if (!c.verify(sender.pub, c.signatureInput(ids, c.SUITE, ct), sig)) throw new Error("signature");
    c.openContent(k2, ct, c.contentAd(ids));
    const td = performance.now() - t;
    if (r >= 2) {
      enc.push(te);
      dec.push(td);
    }
    last = keys.length;
  }
  return { engine, members, devices: members * 2, keys: last, encryptMs: +median(enc).toFixed(2), decryptMs: +median(dec).toFixed(2) };
}

const rows = [];
for (const engine of ["webcrypto", "js"]) {
  await bench(engine, 10); // warm-up: the JIT and the engine's first calls
  for (const members of [10, 100]) rows.push(await bench(engine, members));
}
for (const r of rows) console.log(JSON.stringify(r));
console.log("\n| X25519 engine | members x devices | keys sealed | encrypt ms/message | decrypt ms/message |\n| --- | --- | --- | --- | --- |");
for (const r of rows) console.log(`| ${r.engine} | ${r.members} x 2 | ${r.keys} | ${r.encryptMs} | ${r.decryptMs} |`);
