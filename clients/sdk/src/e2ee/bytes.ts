// Byte helpers of the e2ee module: the encodings of docs/design/e2ee.md
// (base64url without padding, lower-case hex, lp() and u64()), written
// without Buffer, TextEncoder or atob so that React Native needs nothing.

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const B64I: Record<string, number> = {};
for (let i = 0; i < 64; i++) B64I[B64[i]!] = i;

/** b64 encodes bytes as base64url without padding (RFC 4648 section 5). */
export function b64(b: Uint8Array): string {
  let s = "";
  let i = 0;
  for (; i + 2 < b.length; i += 3) {
    const n = (b[i]! << 16) | (b[i + 1]! << 8) | b[i + 2]!;
    s += B64[n >> 18]! + B64[(n >> 12) & 63]! + B64[(n >> 6) & 63]! + B64[n & 63]!;
  }
  if (i < b.length) {
    const n = (b[i]! << 16) | ((b[i + 1] ?? 0) << 8);
    s += B64[n >> 18]! + B64[(n >> 12) & 63]!;
    if (i + 1 < b.length) s += B64[(n >> 6) & 63]!;
  }
  return s;
}

/**
 * unb64 decodes base64url without padding. It throws on any other
 * character, on padding, on an impossible length, and on non-zero trailing
 * bits (so each byte string has exactly one encoding, as Go's RawURLEncoding
 * with Strict).
 */
export function unb64(s: string): Uint8Array {
  if (typeof s !== "string" || s.length % 4 === 1) throw new Error("bad base64url");
  const out = new Uint8Array(Math.floor((s.length * 3) / 4));
  let o = 0;
  let acc = 0;
  let bits = 0;
  for (let i = 0; i < s.length; i++) {
    const v = B64I[s[i]!];
    if (v === undefined) throw new Error("bad base64url");
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 255;
    }
    acc &= (1 << bits) - 1;
  }
  if (acc !== 0) throw new Error("bad base64url");
  return out;
}

/** unb64n decodes base64url that must be exactly n bytes. */
export function unb64n(s: string, n: number): Uint8Array {
  const b = unb64(s);
  if (b.length !== n) throw new Error(`want ${n} bytes, got ${b.length}`);
  return b;
}

/** hex is lower-case hex. */
export function hex(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += (x + 256).toString(16).slice(1);
  return s;
}

export function unhex(s: string): Uint8Array {
  if (!/^([0-9a-f]{2})*$/.test(s)) throw new Error("bad hex");
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** utf8 encodes a string (lone surrogates become U+FFFD, as TextEncoder does). */
export function utf8(s: string): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c >= 0xd800 && c < 0xdc00 && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d < 0xe000) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
      } else c = 0xfffd;
    } else if (c >= 0xd800 && c < 0xe000) c = 0xfffd;
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return Uint8Array.from(out);
}

/** unutf8 decodes UTF-8; it throws on malformed input (content is checked, not repaired). */
export function unutf8(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; ) {
    const x = b[i]!;
    let c: number;
    let n: number;
    if (x < 0x80) (c = x), (n = 0);
    else if (x >= 0xc2 && x < 0xe0) (c = x & 31), (n = 1);
    else if (x >= 0xe0 && x < 0xf0) (c = x & 15), (n = 2);
    else if (x >= 0xf0 && x < 0xf5) (c = x & 7), (n = 3);
    else throw new Error("bad utf-8");
    if (i + n >= b.length + (n ? 0 : 1)) throw new Error("bad utf-8");
    for (let j = 1; j <= n; j++) {
      const y = b[i + j]!;
      if ((y & 0xc0) !== 0x80) throw new Error("bad utf-8");
      c = (c << 6) | (y & 63);
    }
    if ((n === 2 && (c < 0x800 || (c >= 0xd800 && c < 0xe000))) || (n === 3 && (c < 0x10000 || c > 0x10ffff))) throw new Error("bad utf-8");
    s += String.fromCodePoint(c);
    i += n + 1;
  }
  return s;
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** lp is the 4-byte big-endian length of x followed by x (strings as UTF-8). */
export function lp(x: Uint8Array | string): Uint8Array {
  const b = typeof x === "string" ? utf8(x) : x;
  const out = new Uint8Array(4 + b.length);
  new DataView(out.buffer).setUint32(0, b.length);
  out.set(b, 4);
  return out;
}

/** u64 is n as 8 bytes big-endian (n a safe integer >= 0). */
export function u64(n: number): Uint8Array {
  if (!Number.isSafeInteger(n) || n < 0) throw new Error("u64: not a non-negative safe integer");
  const out = new Uint8Array(8);
  const v = new DataView(out.buffer);
  v.setUint32(0, Math.floor(n / 2 ** 32));
  v.setUint32(4, n >>> 0);
  return out;
}

export function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}

/** compare orders byte strings (for sorting identity keys). */
export function compare(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

/**
 * random is n bytes from crypto.getRandomValues; it throws when there is
 * none (React Native needs a polyfill: see the README). Never Math.random.
 */
export function random(n: number): Uint8Array {
  const c = (globalThis as any).crypto;
  if (!c || typeof c.getRandomValues !== "function") throw new Error("crypto.getRandomValues is missing (React Native: install a polyfill such as react-native-get-random-values)");
  const b = new Uint8Array(n);
  for (let o = 0; o < n; o += 65536) c.getRandomValues(b.subarray(o, Math.min(n, o + 65536)));
  return b;
}
