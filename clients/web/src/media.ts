// Media in the web client: the attach button (upload with progress in a
// pending bubble), attachments in messages (blurhash placeholder, then the
// thumbnail; other files as download links) and a lightbox. Server data only
// ever goes into text nodes and attributes, never into innerHTML.
import { decodeBlurhash, type Attachment, type ParleyClient } from "@parley/client";
import type { E2EE } from "@parley/client/e2ee";
import { h } from "./dom";

let e2ee: E2EE | undefined;
/** setE2EE gives the media code the e2ee module (encrypted attachments are fetched and decrypted through it). */
export function setE2EE(e: E2EE | undefined): void {
  e2ee = e;
}

/** plainUrl is a blob: URL of an encrypted attachment (or its thumbnail), decrypted here; cached per media. */
const plain = new Map<string, Promise<string>>();
function plainUrl(a: Attachment, variant: "original" | "thumbnail"): Promise<string> {
  const t = variant === "thumbnail" ? a.thumbnail : a;
  const k = (t && t.mediaId) || a.mediaId;
  let p = plain.get(k);
  if (!p) {
    if (!e2ee) return Promise.reject(new Error("no e2ee module"));
    const type = (variant === "thumbnail" ? a.thumbnail?.contentType : a.contentType) || "application/octet-stream";
    p = e2ee.download(a, variant).then((b) => URL.createObjectURL(new Blob([b as Uint8Array<ArrayBuffer>], { type })));
    p.catch(() => plain.delete(k));
    plain.set(k, p);
  }
  return p;
}

/** thumbOf makes a JPEG preview (longest side 320 px) of an image file, with both sizes; undefined when it is not an image the browser decodes. */
async function thumbOf(f: File): Promise<{ width: number; height: number; thumbnail: { data: Uint8Array; contentType: string; width: number; height: number } } | undefined> {
  if (!f.type.startsWith("image/") || typeof createImageBitmap !== "function") return undefined;
  try {
    const bmp = await createImageBitmap(f);
    const s = Math.min(1, 320 / Math.max(bmp.width, bmp.height));
    const c = h("canvas", { width: Math.max(1, Math.round(bmp.width * s)), height: Math.max(1, Math.round(bmp.height * s)) });
    c.getContext("2d")?.drawImage(bmp, 0, 0, c.width, c.height);
    const blob = await new Promise<Blob | null>((r) => c.toBlob(r, "image/jpeg", 0.8));
    if (!blob) return undefined;
    return { width: bmp.width, height: bmp.height, thumbnail: { data: new Uint8Array(await blob.arrayBuffer()), contentType: "image/jpeg", width: c.width, height: c.height } };
  } catch {
    return undefined;
  }
}

/** attachControl is the keyboard-accessible attach button with its file input. */
export function attachControl(client: ParleyClient, conversationId: () => string | null, list: () => HTMLElement | null, onError: (e: unknown) => void): HTMLElement {
  const input = h("input", { type: "file", id: "attach-file", class: "sr-only", multiple: true });
  input.addEventListener("change", () => {
    const id = conversationId();
    const files = [...(input.files || [])];
    input.value = "";
    if (id) for (const f of files) void sendFile(client, id, f, list(), onError);
  });
  const label = h("label", { for: "attach-file", class: "attach ghost", role: "button", tabindex: 0, "aria-label": "Attach a file", title: "Attach a file" }, "📎");
  label.addEventListener("keydown", (e: KeyboardEvent) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      input.click();
    }
  });
  return h("span", { class: "attach-wrap" }, label, input);
}

async function sendFile(client: ParleyClient, id: string, f: File, list: HTMLElement | null, onError: (e: unknown) => void): Promise<void> {
  const bar = h("progress", { max: 1, value: 0, "aria-label": "Uploading " + f.name });
  const li = h("li", { class: "msg mine uploading" }, h("div", { class: "bubble" }, h("p", { class: "body" }, f.name), bar));
  if (list) list.append(li);
  try {
    // In an e2ee conversation the server makes no thumbnail: the browser does, and it is encrypted too.
    const extra = client.conversation(id)?.e2ee ? await thumbOf(f) : undefined;
    const a = await client.upload(id, f, { filename: f.name, contentType: f.type, onProgress: (s, t) => (bar.value = t ? s / t : 1), ...extra });
    const ct = a.contentType || f.type;
    client.send(id, "", { type: ct.startsWith("image/") ? "image" : ct.startsWith("video/") ? "video" : "file", attachments: [a] }).acked.catch(() => {});
    li.remove();
  } catch (e) {
    li.classList.add("failed");
    bar.remove();
    li.firstElementChild?.append(h("span", { class: "error" }, "Upload failed"));
    onError(e);
  }
}

/** attachmentsView shows a message's attachments, or null if it has none. */
export function attachmentsView(client: ParleyClient, atts: Attachment[] | undefined): HTMLElement | null {
  if (!atts || !atts.length) return null;
  return h("div", { class: "attachments" }, ...atts.map((a) => one(client, a)));
}

function one(client: ParleyClient, a: Attachment): HTMLElement {
  const name = a.filename || "file";
  const enc = !!(a.encrypted && a.key);
  if (a.thumbnail && (!a.encrypted || (enc && a.thumbnail.mediaId))) {
    const w = a.thumbnail.width;
    const ht = a.thumbnail.height;
    const btn = h("button", { type: "button", class: "thumb", "aria-label": "Open image " + name });
    if (a.blurhash) {
      try {
        const c = h("canvas", { width: 32, height: Math.max(1, Math.round((32 * ht) / w)), class: "blur", "aria-hidden": "true" });
        const cx = c.getContext("2d");
        if (cx) cx.putImageData(new ImageData(decodeBlurhash(a.blurhash, c.width, c.height), c.width, c.height), 0, 0);
        c.style.aspectRatio = `${w} / ${ht}`;
        btn.append(c);
      } catch {
        /* a bad hash: no placeholder */
      }
    }
    (enc ? plainUrl(a, "thumbnail") : client.mediaUrl(a.mediaId, "thumbnail")).then((src) => {
      const img = h("img", { src, alt: name, width: w, height: ht, decoding: "async" });
      img.addEventListener("load", () => btn.replaceChildren(img));
      if (!btn.querySelector("canvas")) btn.append(img);
    }, () => {});
    btn.addEventListener("click", () => lightbox(client, a));
    return btn;
  }
  const link = h("a", { class: "file", rel: "noopener", download: name, href: "#" }, name);
  (enc ? plainUrl(a, "original") : client.mediaUrl(a.mediaId)).then((href) => link.setAttribute("href", href), () => link.removeAttribute("href"));
  return link;
}

/** lightbox shows the original image in a modal <dialog>; Esc closes it (native). */
function lightbox(client: ParleyClient, a: Attachment): void {
  const close = h("button", { type: "button", class: "ghost close", "aria-label": "Close" }, "✕");
  const img = h("img", { alt: a.filename || "image", class: "full" });
  const d = h("dialog", { class: "lightbox", "aria-label": a.filename || "Image" }, close, img);
  close.addEventListener("click", () => d.close());
  d.addEventListener("click", (e) => {
    if (e.target === d) d.close();
  });
  d.addEventListener("close", () => d.remove());
  document.body.append(d);
  d.showModal();
  (a.encrypted && a.key ? plainUrl(a, "original") : client.mediaUrl(a.mediaId)).then((src) => img.setAttribute("src", src), () => {});
}
