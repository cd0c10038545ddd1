// Media: tus upload in chunks with progress, resume via HEAD after a failed
// PATCH, attachments in the send frame, signed links, blurhash decoding.
import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeBlurhash, ParleyError } from "../../dist/esm/index.js";
import { FakeServer, makeClient, online, waitFor, CONV, convObj, entry } from "./fakes.mjs";

const MID = "01936f4e-9999-7000-8000-000000000001";

/** tusServer adds a tus endpoint to a FakeServer; fail(offset) may make a PATCH fail. */
function tusServer({ fail = () => false } = {}) {
  const server = new FakeServer();
  const inner = server.fetch;
  const up = { length: 0, data: [], meta: {}, patches: [], heads: 0, links: 0 };
  const res = (status, headers = {}, body) => ({ status, url: "", headers: { get: (n) => headers[n] ?? null }, text: async () => (body === undefined ? "" : JSON.stringify(body)) });
  server.fetch = async (url, init) => {
    const u = new URL(url);
    const h = init.headers;
    if (u.pathname === "/v1/uploads" && init.method === "POST") {
      assert.equal(h["Tus-Resumable"], "1.0.0");
      assert.equal(h.Authorization, "Bearer at-0");
      up.length = Number(h["Upload-Length"]);
      for (const kv of h["Upload-Metadata"].split(",")) {
        const [k, v] = kv.split(" ");
        up.meta[k] = Buffer.from(v, "base64").toString();
      }
      return res(201, { Location: "/v1/uploads/" + MID });
    }
    if (u.pathname === "/v1/uploads/" + MID && init.method === "PATCH") {
      const off = Number(h["Upload-Offset"]);
      assert.equal(h["Content-Type"], "application/offset+octet-stream");
      up.patches.push([off, init.body.length]);
      if (off !== up.data.length) return res(409);
      if (fail(off)) {
        up.data.push(...init.body.slice(0, 2)); // the server got part of it
        throw new TypeError("fetch failed");
      }
      up.data.push(...init.body);
      const done = up.data.length === up.length;
      return res(204, { "Upload-Offset": String(up.data.length), ...(done ? { "Parley-Media-Id": MID, "Parley-Media-State": "ready" } : {}) });
    }
    if (u.pathname === "/v1/uploads/" + MID && init.method === "HEAD") {
      up.heads++;
      return res(200, { "Upload-Offset": String(up.data.length), "Upload-Length": String(up.length) });
    }
    if (u.pathname === "/v1/media/" + MID + "/info") {
      return res(200, {}, { media_id: MID, content_type: "image/png", size: up.length, width: 4, height: 2, thumbnail: { width: 4, height: 2 }, blurhash: "LEHV6nWB2yk8pyo0adR*.7kCMdnj" });
    }
    if (u.pathname === "/v1/media/" + MID) {
      up.links++;
      const v = u.searchParams.get("variant") || "original";
      const link = `/m/${MID}/${v}?exp=${Math.floor(Date.now() / 1000) + 3600}&sig=s${up.links}`;
      return res(302, { Location: link }, { url: link, expires_at: new Date(Date.now() + 3600_000).toISOString() });
    }
    return inner(url, init);
  };
  return { server, up };
}

test("upload sends tus chunks with progress and returns the processed attachment", async () => {
  const { server, up } = tusServer();
  const { client } = makeClient({ server });
  await client.login("alice", "correct horse battery");
  const bytes = Uint8Array.from({ length: 10 }, (_, i) => i * 7);
  const seen = [];
  const a = await client.upload(CONV, bytes, { filename: "dot.png", contentType: "image/png", chunkSize: 4, onProgress: (s, t) => seen.push([s, t]) });
  assert.deepEqual(up.meta, { conversation_id: CONV, filename: "dot.png", content_type: "image/png", encrypted: "false" });
  assert.deepEqual(up.patches, [[0, 4], [4, 4], [8, 2]]);
  assert.deepEqual(up.data, [...bytes]);
  assert.deepEqual(seen, [[0, 10], [4, 10], [8, 10], [10, 10]]);
  assert.equal(a.mediaId, MID);
  assert.deepEqual(a.thumbnail, { width: 4, height: 2 });
  assert.equal(a.contentType, "image/png");
});

test("a failed PATCH is resumed at the offset HEAD reports; bounded retries give up", async () => {
  let failed = 0;
  const { server, up } = tusServer({ fail: (off) => off === 4 && failed++ === 0 });
  const { client } = makeClient({ server });
  await client.login("alice", "correct horse battery");
  const bytes = Uint8Array.from({ length: 10 }, (_, i) => 100 + i);
  const a = await client.upload(CONV, new Blob([bytes]), { chunkSize: 4, retryDelayMs: 1 });
  assert.equal(a.mediaId, MID);
  assert.equal(up.heads, 1);
  assert.deepEqual(up.patches, [[0, 4], [4, 4], [6, 4]]);
  assert.equal(up.patches[2][0], 6, "resumed at the server's offset, not the chunk start");
  assert.deepEqual(up.data, [...bytes]);

  const always = tusServer({ fail: () => true });
  const c2 = makeClient({ server: always.server }).client;
  await c2.login("alice", "correct horse battery");
  await assert.rejects(c2.upload(CONV, bytes, { chunkSize: 4, retryDelayMs: 1, maxRetries: 2 }), (e) => e instanceof ParleyError && e.code === "network");
  assert.equal(always.up.heads, 2, "a HEAD after each of the 2 allowed failures");
});

test("send puts the attachments in the frame and the outbox entry", async () => {
  const { client } = makeClient();
  const ws = await online(client, { conversations: [entry(convObj(CONV, 0))] });
  client.send(CONV, "", { type: "image", attachments: [MID], clientMsgId: "cm-a" });
  const f = await waitFor(() => ws.lastOf("send"), "a send frame");
  assert.deepEqual(f.attachments, [{ media_id: MID }]);
  assert.equal(f.message_type, "image");
  client.send(CONV, "no media", { clientMsgId: "cm-b" });
  const g = await waitFor(() => ws.ofType("send").find((x) => x.client_msg_id === "cm-b"));
  assert.equal(g.attachments, undefined);
  client.close();
});

test("mediaUrl returns the signed link from the 302 and caches it per variant", async () => {
  const { server, up } = tusServer();
  const { client } = makeClient({ server });
  await client.login("alice", "correct horse battery");
  const t1 = await client.mediaUrl(MID, "thumbnail");
  assert.match(t1, new RegExp(`^http://parley\\.test/m/${MID}/thumbnail\\?exp=\\d+&sig=s1$`));
  assert.equal(await client.mediaUrl(MID, "thumbnail"), t1, "cached");
  const o = await client.mediaUrl(MID);
  assert.match(o, /\/original\?exp=\d+&sig=s2$/);
  assert.equal(up.links, 2);
});

test("decodeBlurhash paints the hash's colours", () => {
  // The blurha.sh demo hash; its DC component is 0x9D9D4A... decoded below
  // from the hash itself, and the mean of the picture is close to it.
  const px = decodeBlurhash("LEHV6nWB2yk8pyo0adR*.7kCMdnj", 32, 32);
  assert.equal(px.length, 32 * 32 * 4);
  const mean = [0, 1, 2].map((c) => px.filter((_, i) => i % 4 === c).reduce((a, b) => a + b, 0) / 1024);
  const alpha = px.filter((_, i) => i % 4 === 3);
  assert.ok(alpha.every((a) => a === 255));
  // The reference implementation's average colour of this hash.
  const CH = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~";
  const dc = [..."HV6n"].reduce((v, ch) => v * 83 + CH.indexOf(ch), 0);
  const want = [dc >> 16, (dc >> 8) & 255, dc & 255];
  for (let c = 0; c < 3; c++) assert.ok(Math.abs(mean[c] - want[c]) < 25, `channel ${c}: mean ${mean[c]} vs DC ${want[c]}`);
  assert.notDeepEqual([px[0], px[1], px[2]], [px[4 * 31], px[4 * 31 + 1], px[4 * 31 + 2]], "not flat: AC components apply");
  assert.throws(() => decodeBlurhash("LEHV6nWB2yk8", 4, 4), /length/);
});
