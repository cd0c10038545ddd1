// Web Push: the service worker's registration and the push subscription.
import type { ParleyClient } from "@parley/client";

/** registerServiceWorker registers /sw.js for the whole origin; null where unsupported. */
export async function registerServiceWorker(): Promise<ServiceWorkerRegistration | null> {
  if (!("serviceWorker" in navigator)) return null;
  try {
    return await navigator.serviceWorker.register("/sw.js", { scope: "/" });
  } catch {
    return null;
  }
}

function base64urlToBytes(s: string): ArrayBuffer {
  const b64 = s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)).buffer as ArrayBuffer;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what} timed out`)), ms);
    p.then((v) => { clearTimeout(t); resolve(v); }, (e) => { clearTimeout(t); reject(e); });
  });
}

/**
 * enablePush asks for permission, subscribes with the server's VAPID key
 * and registers the subscription with the server. It resolves to a line
 * for the person ("Notifications on", or why not). Subscribing waits at
 * most timeoutMs: a browser without a reachable push service never answers.
 */
export async function enablePush(client: ParleyClient, timeoutMs = 10000): Promise<string> {
  if (!("Notification" in window) || !("serviceWorker" in navigator) || !("PushManager" in window)) {
    return "This browser has no Web Push.";
  }
  const permission = await Notification.requestPermission();
  if (permission !== "granted") return "Notifications are blocked for this site.";
  const reg = await withTimeout(navigator.serviceWorker.ready, timeoutMs, "service worker");
  const key = await client.vapidPublicKey();
  let sub = await reg.pushManager.getSubscription();
  if (!sub) {
    sub = await withTimeout(
      reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: base64urlToBytes(key) }),
      timeoutMs,
      "push subscription",
    );
  }
  const json = sub.toJSON();
  if (!json.endpoint) throw new Error("the browser gave a subscription without an endpoint");
  await client.registerPush({ kind: "webpush", subscription: { ...json, endpoint: json.endpoint } });
  return "Notifications on.";
}

// The service worker shows pushes only while someone is signed in here: the
// page keeps a flag in the Cache API (shared with the worker, which has no
// localStorage). Keep these two names in step with sw.ts.
const SESSION_CACHE = "parley-session";
const SESSION_URL = "/__parley/signed-in";

/** setSignedIn tells the service worker whether a user is signed in on this browser. */
export async function setSignedIn(on: boolean): Promise<void> {
  if (!("caches" in window)) return;
  try {
    if (on) await (await caches.open(SESSION_CACHE)).put(SESSION_URL, new Response("1"));
    else await caches.delete(SESSION_CACHE);
  } catch {
    /* no Cache API here (private mode): pushes are still unsubscribed at sign-out */
  }
}

/** closeNotifications closes this app's notifications (of one conversation, by tag, or all). */
export async function closeNotifications(tag?: string): Promise<number> {
  if (!("serviceWorker" in navigator)) return 0;
  try {
    const reg = await navigator.serviceWorker.getRegistration();
    if (!reg) return 0;
    const open = await reg.getNotifications(tag ? { tag } : undefined);
    for (const n of open) n.close();
    return open.length;
  } catch {
    return 0;
  }
}

/**
 * signOutLocally removes what a signed-out browser must not keep showing:
 * the push subscription (unsubscribed in the browser, so nothing more
 * arrives), every open notification, the app badge, and the worker's
 * signed-in flag (set first: a push racing the unsubscribe is dropped).
 */
export async function signOutLocally(): Promise<void> {
  await setSignedIn(false);
  if ("serviceWorker" in navigator) {
    try {
      const reg = await navigator.serviceWorker.getRegistration();
      const sub = await reg?.pushManager?.getSubscription();
      await sub?.unsubscribe();
    } catch {
      /* nothing subscribed, or no push service */
    }
  }
  await closeNotifications();
  const nav = navigator as Navigator & { clearAppBadge?: () => Promise<void> };
  await nav.clearAppBadge?.().catch(() => {});
}
