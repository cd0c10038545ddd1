import { ParleyError, asError } from "./errors.js";
import type { Rest } from "./rest.js";
import type { Attachment, FetchResponse } from "./types.js";
import { camel } from "./util.js";

export interface UploadOptions {
  filename?: string;
  /** the declared type (the server sniffs the content anyway); default the Blob's type */
  contentType?: string;
  /** a client-side encrypted upload: the server makes no thumbnail or blurhash */
  encrypted?: boolean;
  /** bytes per PATCH; default 4 MiB */
  chunkSize?: number;
  /** called after each chunk the server took (and once at the start) */
  onProgress?: (sent: number, total: number) => void;
  signal?: AbortSignal;
  /** failures in a row before giving up; default 5 */
  maxRetries?: number;
  /** the first retry's wait, doubled per failure (at most 16x); default 1000 ms */
  retryDelayMs?: number;
  // An upload to an e2ee conversation is encrypted by the e2ee module, and the
  // server sees none of its metadata: these go inside the message content.
  width?: number;
  height?: number;
  durationMs?: number;
  blurhash?: string;
  /** e2ee: a preview (JPEG, PNG...) the app made, uploaded encrypted with its own key */
  thumbnail?: { data: Uint8Array; contentType: string; width?: number; height?: number };
}

const TUS = { "Tus-Resumable": "1.0.0" };
const b64 = (s: string) => btoa(String.fromCharCode(...new TextEncoder().encode(s)));

/** A failure a retry may fix: the network, a 5xx, a rate limit, a tus offset conflict. */
const retryable = (e: ParleyError) => e.code === "network" || e.code === "rate_limited" || e.code === "unavailable" || e.code === "internal" || e.status === 409;

async function call(c: Rest, method: string, path: string, headers: Record<string, string>, body?: Uint8Array<ArrayBuffer>, signal?: AbortSignal): Promise<FetchResponse> {
  let res: FetchResponse;
  try {
    res = await c.authFetch(path, { method, headers: { ...TUS, ...headers }, body, signal });
  } catch (e) {
    if (signal && signal.aborted) throw new ParleyError("cancelled", "upload cancelled");
    throw e instanceof ParleyError ? e : new ParleyError("network", `${method} ${path}: ${asError(e).message}`);
  }
  if (res.status >= 400) {
    let d: any;
    try {
      d = JSON.parse(await res.text());
    } catch {}
    const s = res.status;
    const e = d && d.error;
    throw new ParleyError((e && e.code) || (s === 429 ? "rate_limited" : s === 404 || s === 410 ? "not_found" : s >= 500 ? "unavailable" : "invalid_request"), (e && e.message) || `${method} ${path}: HTTP ${s}`, { status: s });
  }
  return res;
}

/**
 * upload sends data to the server with tus (POST, then PATCH chunks; after
 * a failure it asks HEAD for the server's offset and resumes there, up to
 * maxRetries failures in a row) and returns the processed attachment: pass
 * its mediaId to send's attachments.
 */
export async function upload(c: Rest, conversationId: string, data: Blob | Uint8Array | ArrayBuffer, o: UploadOptions = {}): Promise<Attachment> {
  const blob = data instanceof Blob ? data : new Blob([data as ArrayBuffer]);
  const size = blob.size;
  const chunk = Math.max(1, o.chunkSize || 4 << 20);
  const max = o.maxRetries ?? 5;
  const sig = o.signal;
  const meta = [
    ["conversation_id", conversationId],
    ["filename", o.filename || (blob as Blob & { name?: string }).name || "file"],
    ["content_type", o.contentType || blob.type || "application/octet-stream"],
    ["encrypted", String(!!o.encrypted)],
  ]
    .map(([k, v]) => k + " " + b64(v))
    .join(",");
  let failures = 0;
  const retry = async (e: unknown) => {
    const err = asError(e);
    if (!retryable(err) || ++failures > max || (sig && sig.aborted)) throw err;
    await new Promise<void>((r) => setTimeout(r, (o.retryDelayMs ?? 1000) * 2 ** Math.min(4, failures - 1)));
  };
  let path = "";
  while (!path) {
    try {
      const res = await call(c, "POST", "/v1/uploads", { "Upload-Length": String(size), "Upload-Metadata": meta }, undefined, sig);
      path = (res.headers.get("Location") || "").replace(/^https?:\/\/[^/]+/, "");
      if (!path) throw new ParleyError("internal", "POST /v1/uploads: no Location");
    } catch (e) {
      await retry(e);
    }
  }
  let off = 0;
  let id = "";
  let state = "";
  let reason = "";
  const progress = () => o.onProgress && o.onProgress(off, size);
  progress();
  while (off < size) {
    try {
      const body = new Uint8Array(await blob.slice(off, off + chunk).arrayBuffer());
      const res = await call(c, "PATCH", path, { "Content-Type": "application/offset+octet-stream", "Upload-Offset": String(off) }, body, sig);
      const n = Number(res.headers.get("Upload-Offset"));
      if (!(n > off && n <= size)) throw new ParleyError("internal", `PATCH: the server's offset ${n} is outside ${off}-${size}`);
      off = n;
      failures = 0;
      id = res.headers.get("Parley-Media-Id") || id;
      state = res.headers.get("Parley-Media-State") || state;
      reason = res.headers.get("Parley-Media-Error") || reason;
      progress();
    } catch (e) {
      await retry(e);
      try {
        const h = await call(c, "HEAD", path, { "Cache-Control": "no-store" }, undefined, sig);
        off = Number(h.headers.get("Upload-Offset")) || 0;
        progress();
      } catch (e2) {
        const err = asError(e2);
        if (err.code === "not_found") throw new ParleyError("not_found", "the server no longer has this upload");
        if (!retryable(err)) throw err;
      }
    }
  }
  if (state === "failed") throw new ParleyError("invalid_request", "the server could not process the upload: " + (reason || "no reason given"));
  id = id || path.slice(path.lastIndexOf("/") + 1);
  const r = await c.request<any>("GET", "/v1/media/" + encodeURIComponent(id) + "/info");
  return camel<Attachment>((r && (r.attachment || r.media)) || r);
}

const links = new WeakMap<Rest, Map<string, { url: string; exp: number }>>();

/**
 * mediaUrl is a signed link to the media (or its thumbnail) that needs no
 * token (for <img src> and <a href>), cached until a minute before it expires.
 */
export async function mediaUrl(c: Rest, mediaId: string, variant: "original" | "thumbnail" = "original"): Promise<string> {
  let m = links.get(c);
  if (!m) links.set(c, (m = new Map()));
  const k = mediaId + "/" + variant;
  const now = Date.now();
  const hit = m.get(k);
  if (hit && hit.exp - 60000 > now) return hit.url;
  const res: any = await call(c, "GET", "/v1/media/" + encodeURIComponent(mediaId) + (variant === "thumbnail" ? "?variant=thumbnail" : ""), {});
  let url = "";
  let exp = 0;
  if (res.status === 302 || res.status === 200) {
    // A client that does not follow redirects reads the body; one that
    // does (browsers) has the signed link as the final URL: stop its body.
    if (res.status === 302) {
      try {
        const d = JSON.parse(await res.text());
        url = d.url;
        exp = Date.parse(d.expires_at);
      } catch {}
      url = url || res.headers.get("Location") || "";
    } else {
      url = res.url || "";
      if (res.body && res.body.cancel) res.body.cancel().catch(() => {});
    }
  }
  if (!url) throw new ParleyError("internal", "no signed link in the answer");
  url = c.abs(url);
  if (!(exp > 0)) exp = Number(new URL(url).searchParams.get("exp")) * 1000 || now + 300000;
  m.set(k, { url, exp });
  return url;
}

const CH = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~";

function d83(s: string, a: number, b: number): number {
  let v = 0;
  for (let i = a; i < b; i++) {
    const d = CH.indexOf(s[i]);
    if (d < 0) throw new ParleyError("invalid_request", "not a blurhash");
    v = v * 83 + d;
  }
  return v;
}

const toLin = (v: number) => ((v /= 255) <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
const toSrgb = (v: number) => {
  v = Math.max(0, Math.min(1, v));
  return Math.trunc((v <= 0.0031308 ? v * 12.92 : 1.055 * v ** (1 / 2.4) - 0.055) * 255 + 0.5);
};
const signPow = (v: number) => Math.sign(v) * v * v;

/**
 * decodeBlurhash paints a BlurHash (https://blurha.sh) as w x h RGBA pixels
 * (for an ImageData). punch > 1 raises the contrast.
 */
export function decodeBlurhash(hash: string, w: number, h: number, punch = 1): Uint8ClampedArray<ArrayBuffer> {
  const sf = d83(hash, 0, 1);
  const ny = Math.floor(sf / 9) + 1;
  const nx = (sf % 9) + 1;
  if (hash.length !== 4 + 2 * nx * ny) throw new ParleyError("invalid_request", "blurhash length does not match its size flag");
  const maxV = ((d83(hash, 1, 2) + 1) / 166) * punch;
  const cs: number[][] = [];
  for (let i = 0; i < nx * ny; i++) {
    if (i === 0) {
      const v = d83(hash, 2, 6);
      cs.push([toLin(v >> 16), toLin((v >> 8) & 255), toLin(v & 255)]);
    } else {
      const v = d83(hash, 4 + i * 2, 6 + i * 2);
      cs.push([Math.floor(v / 361), Math.floor(v / 19) % 19, v % 19].map((q) => signPow((q - 9) / 9) * maxV));
    }
  }
  const out = new Uint8ClampedArray(w * h * 4);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      let r = 0,
        g = 0,
        b = 0;
      for (let j = 0; j < ny; j++)
        for (let i = 0; i < nx; i++) {
          const f = Math.cos((Math.PI * x * i) / w) * Math.cos((Math.PI * y * j) / h);
          const c = cs[i + j * nx];
          r += c[0] * f;
          g += c[1] * f;
          b += c[2] * f;
        }
      const p = 4 * (x + y * w);
      out[p] = toSrgb(r);
      out[p + 1] = toSrgb(g);
      out[p + 2] = toSrgb(b);
      out[p + 3] = 255;
    }
  return out;
}
