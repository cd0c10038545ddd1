import type { Message } from "./types.js";

/** camel converts snake_case keys to camelCase, deeply. */
export function camel<T>(v: unknown): T {
  if (Array.isArray(v)) return v.map(camel) as T;
  if (v && typeof v === "object") {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) o[k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase())] = camel(x);
    return o as T;
  }
  return v as T;
}

/** uuid is a random (version 4) UUID: crypto.getRandomValues when present, else random. */
export function uuid(random: () => number): string {
  const b = new Uint8Array(16);
  const c = (globalThis as any).crypto;
  if (c && c.getRandomValues) c.getRandomValues(b);
  else for (let i = 0; i < 16; i++) b[i] = (random() * 256) & 255;
  b[6] = (b[6]! & 15) | 64;
  b[8] = (b[8]! & 63) | 128;
  const h = [...b].map((x) => (x + 256).toString(16).slice(1)).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const editTime = (m: Message) => (m.editedAt ? Date.parse(m.editedAt) : -Infinity);

/**
 * merge applies the rule of protocol.md section 6 to a held copy and an
 * incoming one: it returns the copy to keep, or undefined to keep the held
 * one. A tombstone is final; otherwise the later edited_at wins, a tie keeps
 * the held copy.
 */
export function merge(held: Message | undefined, m: Message): Message | undefined {
  if (!held) return m;
  if (held.deleted) return undefined;
  if (m.deleted) return m;
  // e2ee: a copy that decrypts (its key came after a key request) replaces one that did not.
  if (held.e2ee && held.e2ee.state !== "decrypted" && m.e2ee && m.e2ee.state === "decrypted") return m;
  return editTime(m) > editTime(held) ? m : undefined;
}

/**
 * later runs fn after ms (by the clock now), in steps under 50 s each so that
 * React Native never sees a long timer. It returns its cancel function.
 */
export function later(ms: number, fn: () => void, now: () => number): () => void {
  const end = now() + ms;
  let t: ReturnType<typeof setTimeout>;
  const step = () => {
    const left = end - now();
    if (left > 0) t = setTimeout(step, Math.min(left, 50000));
    else fn();
  };
  t = setTimeout(step, Math.min(Math.max(ms, 0), 50000));
  return () => clearTimeout(t);
}

/** utf8Length is the byte length of s in UTF-8 (no TextEncoder needed). */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    n += c < 0x80 ? 1 : c < 0x800 ? 2 : c >= 0xd800 && c < 0xdc00 ? (i++, 4) : 3;
  }
  return n;
}

/** least is the smallest number of it (Infinity when empty); no spread, so no stack limit. */
export function least(it: Iterable<number>): number {
  let m = Infinity;
  for (const x of it) if (x < m) m = x;
  return m;
}
