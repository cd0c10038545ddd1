// RFC 9180's published test vectors for the one suite of version 1
// (DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305), every mode,
// from testdata/e2ee (the file the Go implementation tests against too):
// key derivation, the sender's side with the vector's fixed ephemeral key
// (ikmE), every sequence number's ciphertext, the recipient's side and the
// exporter. Both X25519 engines (WebCrypto and pure JavaScript) must pass.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { suite, useEngine } from "../../dist/esm/e2ee/index.js";

const vectors = JSON.parse(readFileSync(new URL("../../../../testdata/e2ee/rfc9180-x25519-sha256-chacha20poly1305.json", import.meta.url), "utf8"));
const h = (s) => Uint8Array.from(Buffer.from(s, "hex"));
const hx = (b) => Buffer.from(b instanceof ArrayBuffer ? new Uint8Array(b) : b).toString("hex");

test("the vector file is the suite's, all four modes", () => {
  assert.deepEqual(vectors.map((v) => v.mode).sort(), [0, 1, 2, 3]);
  for (const v of vectors) assert.deepEqual([v.kem_id, v.kdf_id, v.aead_id], [0x20, 1, 3]);
});

for (const engine of ["webcrypto", "js"]) {
  for (const v of vectors) {
    test(`RFC 9180 A.2 mode ${v.mode} (${engine})`, async (t) => {
      useEngine(engine);
      t.after(() => useEngine("auto"));
      const s = await suite();
      const kpR = await s.kem.deriveKeyPair(h(v.ikmR).buffer);
      assert.equal(hx(await s.kem.serializePrivateKey(kpR.privateKey)), v.skRm);
      assert.equal(hx(await s.kem.serializePublicKey(kpR.publicKey)), v.pkRm);
      const kpE = await s.kem.deriveKeyPair(h(v.ikmE).buffer);
      assert.equal(hx(await s.kem.serializePublicKey(kpE.publicKey)), v.pkEm);
      const kpS = v.ikmS ? await s.kem.deriveKeyPair(h(v.ikmS).buffer) : undefined;
      if (kpS) assert.equal(hx(await s.kem.serializePublicKey(kpS.publicKey)), v.pkSm);
      const psk = v.psk ? { psk: { key: h(v.psk).buffer, id: h(v.psk_id).buffer } } : {};
      const info = h(v.info).buffer;

      // The sender, with the vector's ephemeral key.
      const sender = await s.createSenderContext({
        recipientPublicKey: await s.kem.deserializePublicKey(h(v.pkRm).buffer),
        info,
        ekm: h(v.ikmE).buffer,
        ...psk,
        ...(kpS ? { senderKey: kpS } : {}),
      });
      assert.equal(hx(sender.enc), v.enc);
      for (const [i, e] of v.encryptions.entries()) {
        assert.equal(hx(await sender.seal(h(e.pt).buffer, h(e.aad).buffer)), e.ct, `seal #${i}`);
      }
      // The recipient, from the private key bytes.
      const recipient = await s.createRecipientContext({
        recipientKey: await s.kem.importKey("raw", h(v.skRm).buffer, false),
        enc: h(v.enc).buffer,
        info,
        ...psk,
        ...(kpS ? { senderPublicKey: await s.kem.deserializePublicKey(h(v.pkSm).buffer) } : {}),
      });
      for (const [i, e] of v.encryptions.entries()) {
        assert.equal(hx(await recipient.open(h(e.ct).buffer, h(e.aad).buffer)), e.pt, `open #${i}`);
      }
      for (const x of v.exports) {
        assert.equal(hx(await sender.export(h(x.exporter_context).buffer, x.L)), x.exported_value);
        assert.equal(hx(await recipient.export(h(x.exporter_context).buffer, x.L)), x.exported_value);
      }
      // A flipped bit in a ciphertext does not open.
      const bad = h(v.encryptions[0].ct);
      bad[0] ^= 1;
      const r2 = await s.createRecipientContext({ recipientKey: await s.kem.importKey("raw", h(v.skRm).buffer, false), enc: h(v.enc).buffer, info, ...psk, ...(kpS ? { senderPublicKey: await s.kem.deserializePublicKey(h(v.pkSm).buffer) } : {}) });
      await assert.rejects(r2.open(bad.buffer, h(v.encryptions[0].aad).buffer));
    });
  }
}
