// Attachment files: ChaCha20-Poly1305 in the STREAM construction of
// docs/design/e2ee.md ("Attachment files"): 64 KiB plaintext chunks, chunk
// i sealed with nonce = i as 11 bytes big-endian || 0x01 for the last chunk
// (0x00 otherwise), empty associated data, the sealed chunks one after
// another with no header. A truncated, reordered or extended blob does not
// decrypt.
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";

/** FILE_CHUNK is the plaintext size of every chunk but the last. */
export const FILE_CHUNK = 64 << 10;
const TAG = 16;
const SEALED = FILE_CHUNK + TAG;

function nonce(i: number, last: boolean): Uint8Array {
  const n = new Uint8Array(12);
  const v = new DataView(n.buffer);
  v.setUint32(3, Math.floor(i / 2 ** 32));
  v.setUint32(7, i >>> 0);
  n[11] = last ? 1 : 0;
  return n;
}

/** encryptedFileSize is the size of the blob of a plaintext of size bytes. */
export function encryptedFileSize(size: number): number {
  return size + TAG * Math.max(1, Math.ceil(size / FILE_CHUNK));
}

/** encryptFile seals a whole file (an empty file is one empty chunk). */
export function encryptFile(key: Uint8Array, plain: Uint8Array): Uint8Array {
  const chunks = Math.max(1, Math.ceil(plain.length / FILE_CHUNK));
  const out = new Uint8Array(encryptedFileSize(plain.length));
  for (let i = 0; i < chunks; i++) {
    const last = i === chunks - 1;
    const c = chacha20poly1305(key, nonce(i, last)).encrypt(plain.subarray(i * FILE_CHUNK, (i + 1) * FILE_CHUNK));
    out.set(c, i * SEALED);
  }
  return out;
}

/** decryptFile opens a blob; it throws (returning nothing) when any chunk does not open or the size is impossible. */
export function decryptFile(key: Uint8Array, blob: Uint8Array): Uint8Array {
  const full = Math.floor(blob.length / SEALED);
  const rest = blob.length % SEALED;
  if (blob.length < TAG || (rest > 0 && rest < TAG) || (rest === TAG && full > 0)) throw new Error("the encrypted file's size is impossible");
  const chunks = rest ? full + 1 : full;
  const out = new Uint8Array(blob.length - TAG * chunks);
  for (let i = 0; i < chunks; i++) {
    const last = i === chunks - 1;
    const p = chacha20poly1305(key, nonce(i, last)).decrypt(blob.subarray(i * SEALED, (i + 1) * SEALED));
    out.set(p, i * FILE_CHUNK);
  }
  return out;
}
