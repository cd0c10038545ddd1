// The service worker: shows Parley's Web Push notifications (docs/push.md,
// "What each platform receives"), closes a conversation's notifications
// when a silent read update says it was read elsewhere, opens the app at
// the conversation on a click, and keeps the app shell for offline loads.
export {};
declare const self: ServiceWorkerGlobalScope;
declare const __SHELL__: string[];
declare const __VERSION__: string;

const CACHE = "parley-shell-" + __VERSION__;

/** The push payload: every value is a string (docs/push.md). */
interface PushData {
  type?: string;
  conversation_id?: string;
  seq?: string;
  count?: string;
  badge?: string;
  sender_id?: string;
  sender_name?: string;
  trace_id?: string;
  preview?: string;
  request?: string;
}

/** tell posts what the worker did to every window of the app (tests and the page listen). */
async function tell(msg: Record<string, unknown>): Promise<void> {
  const wins = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  for (const w of wins) w.postMessage(msg);
}

function setBadge(badge: string | undefined): void {
  const n = Number(badge);
  const nav = self.navigator as WorkerNavigator & { setAppBadge?: (n: number) => Promise<void>; clearAppBadge?: () => Promise<void> };
  if (!Number.isFinite(n)) return;
  if (n > 0) nav.setAppBadge?.(n).catch(() => {});
  else nav.clearAppBadge?.().catch(() => {});
}

function bodyOf(d: PushData): string {
  if (d.request === "true") return "Message request";
  if (d.preview) return d.preview;
  const count = Number(d.count) || 1;
  return count <= 1 ? "New message" : `${count} new messages`;
}

// Set by the page (push.ts setSignedIn) at sign-in, removed at sign-out.
const SESSION_CACHE = "parley-session";
const SESSION_URL = "/__parley/signed-in";

async function signedIn(): Promise<boolean> {
  try {
    return !!(await (await caches.open(SESSION_CACHE)).match(SESSION_URL));
  } catch {
    return true; // no Cache API: the unsubscribe at sign-out is what stops pushes
  }
}

async function onPush(d: PushData): Promise<void> {
  const tag = d.conversation_id ?? "parley";
  if (d.type === "message" && !(await signedIn())) {
    await tell({ type: "notification-dropped", tag, reason: "signed out" });
    return;
  }
  setBadge(d.badge);
  if (d.type === "read") {
    const open = await self.registration.getNotifications({ tag });
    const count = Number(d.count) || 0;
    if (count === 0) {
      for (const n of open) n.close();
      await tell({ type: "notification-closed", tag, closed: open.length });
      return;
    }
    // Some is still unread: the notification says how much, silently.
    for (const n of open) {
      const prev = (n.data ?? {}) as PushData;
      const next: PushData = { ...prev, count: d.count, badge: d.badge };
      await self.registration.showNotification(n.title, { tag, body: bodyOf(next), data: next, silent: true, icon: "/icon.svg" });
    }
    await tell({ type: "notification-updated", tag, count });
    return;
  }
  if (d.type !== "message") return;
  const title = d.request === "true" ? "Message request" : d.sender_name || "Parley";
  const body = bodyOf(d);
  await self.registration.showNotification(title, {
    tag,
    body,
    data: d,
    icon: "/icon.svg",
    badge: "/icon.svg",
    renotify: true,
  } as NotificationOptions);
  await tell({ type: "notification-shown", tag, title, body, data: d });
}

self.addEventListener("push", (e: PushEvent) => {
  let d: PushData;
  try {
    d = (e.data?.json() ?? {}) as PushData;
  } catch {
    return;
  }
  e.waitUntil(onPush(d));
});

/** openAt focuses a window of the app and shows the conversation, or opens one there. */
async function openAt(conversationId: string | undefined): Promise<void> {
  const wins = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  const win = wins.find((w) => new URL(w.url).origin === self.location.origin);
  if (win) {
    await win.focus().catch(() => win);
    win.postMessage({ type: "open", conversationId });
    return;
  }
  await self.clients.openWindow(conversationId ? "/#/c/" + conversationId : "/");
}

self.addEventListener("notificationclick", (e: NotificationEvent) => {
  e.notification.close();
  const d = (e.notification.data ?? {}) as PushData;
  const done = openAt(d.conversation_id);
  try {
    e.waitUntil(done);
  } catch {
    /* an event not from the browser (a test's) cannot extend its lifetime */
  }
});

// The app shell: a load while the server is down still shows the app
// (which then works from its stored state and says it is offline).
self.addEventListener("install", (e: ExtendableEvent) => {
  e.waitUntil(
    caches
      .open(CACHE)
      .then((c) => c.addAll(__SHELL__))
      .catch(() => {})
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (e: ExtendableEvent) => {
  e.waitUntil(
    (async () => {
      for (const k of await caches.keys()) if (k.startsWith("parley-shell-") && k !== CACHE) await caches.delete(k);
      await self.clients.claim();
    })(),
  );
});

self.addEventListener("fetch", (e: FetchEvent) => {
  const req = e.request;
  const url = new URL(req.url);
  if (req.method !== "GET" || url.origin !== self.location.origin) return;
  if (!__SHELL__.includes(url.pathname) && req.mode !== "navigate") return;
  // Network first (a new build shows at once), the cached shell when the
  // server cannot be reached.
  e.respondWith(
    fetch(req).catch(async () => {
      const hit = await caches.match(req.mode === "navigate" ? "/" : req);
      return hit ?? Response.error();
    }),
  );
});
