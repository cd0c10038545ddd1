// The chat UI: a login screen, then the conversation list beside the open
// conversation (one at a time on a phone). Everything shown comes from the
// SDK's local state (client.conversations(), client.messages(), the status
// observables); events only say what to draw again.
import {
  ParleyClient,
  ParleyError,
  type ConversationState,
  type Member,
  type MessageStatus,
  type MessageView,
  type User,
} from "@parley/client";
import type { E2EE } from "@parley/client/e2ee";
import { $, h, hue, initials, timeOf } from "./dom";
import { closeNotifications, enablePush, setSignedIn, signOutLocally } from "./push";
import { attachControl, attachmentsView, setE2EE } from "./media";

/** What the app keeps for each message element it drew. */
interface Drawn {
  el: HTMLLIElement;
  tick: HTMLElement | null;
  seq: number;
  unsub: (() => void) | null;
}

const USERS_KEY = "parley-web-users";

const STATUS_TEXT: Record<string, string> = {
  offline: "Offline. Messages you send will go out when the connection is back.",
  connecting: "Connecting…",
  syncing: "Updating…",
};

export class App {
  private me: User | null = null;
  private openId: string | null = null;
  private users = new Map<string, User>();
  private fetching = new Set<string>();
  private drawn = new Map<string, Drawn>();
  private drawnFor: string | null = null;
  private loadingOlder = false;
  private atStart = new Set<string>();
  private offs: Array<() => void> = [];
  private pending = { list: false, chat: false, header: false };
  private frame = 0;
  private typingTimer: ReturnType<typeof setInterval> | undefined;
  /** When each "conversation user" last started typing, and last sent: a message ends the typing even if its stop was lost. */
  private typingAt = new Map<string, number>();
  private sentAt = new Map<string, number>();
  private accepted = new Set<string>();

  constructor(private root: HTMLElement, private client: ParleyClient, private e2ee?: E2EE) {
    setE2EE(e2ee);
    // Names of people seen before, so that a load while offline shows them.
    try {
      for (const u of JSON.parse(localStorage.getItem(USERS_KEY) ?? "[]") as User[]) this.users.set(u.id, u);
    } catch {
      /* none kept */
    }
  }

  private rememberUser(u: User): void {
    this.users.set(u.id, u);
    try {
      localStorage.setItem(USERS_KEY, JSON.stringify([...this.users.values()].slice(-500)));
    } catch {
      /* storage full or refused: names are fetched again */
    }
  }

  async start(): Promise<void> {
    window.addEventListener("online", () => this.client.setOnline(true));
    window.addEventListener("offline", () => this.client.setOnline(false));
    window.addEventListener("hashchange", () => this.openFromHash());
    document.addEventListener("visibilitychange", () => this.markRead());
    navigator.serviceWorker?.addEventListener("message", (e: MessageEvent) => {
      const d = e.data as { type?: string; conversationId?: string } | null;
      if (d?.type === "open" && d.conversationId) location.hash = "#/c/" + d.conversationId;
    });
    let restored = false;
    try {
      restored = await this.client.restore();
    } catch {
      restored = false;
    }
    if (restored) await this.enter();
    else this.showLogin();
  }

  // ---- login ----

  private showLogin(message = ""): void {
    document.title = "Parley";
    this.root.replaceChildren();
    const err = h("p", { class: "form-error", role: "alert", id: "login-error" }, message);
    const handle = h("input", { id: "handle", name: "handle", autocomplete: "username", required: true, autocapitalize: "none", spellcheck: "false" });
    const password = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true, minlength: 8 });
    const display = h("input", { id: "display-name", name: "display_name", autocomplete: "name" });
    const busy = (on: boolean) => form.querySelectorAll("button").forEach((b) => (b.disabled = on));
    const submit = async (register: boolean) => {
      err.textContent = "";
      busy(true);
      try {
        if (register) await this.client.register(handle.value.trim(), password.value, display.value.trim() || undefined);
        await this.client.login(handle.value.trim(), password.value);
        await this.enter();
      } catch (e) {
        err.textContent = describe(e);
        busy(false);
      }
    };
    const form = h(
      "form",
      { class: "login", "aria-labelledby": "login-title" },
      h("div", { class: "brand" }, h("img", { src: "/icon.svg", alt: "", width: 48, height: 48 }), h("h1", { id: "login-title" }, "Parley")),
      h("label", { for: "handle" }, "Handle"),
      handle,
      h("label", { for: "password" }, "Password"),
      password,
      h("label", { for: "display-name" }, "Display name ", h("span", { class: "hint" }, "(new accounts)")),
      display,
      err,
      h("div", { class: "row" },
        h("button", { type: "submit", class: "primary", id: "login" }, "Log in"),
        h("button", { type: "button", id: "register", onclick: () => { if (form.reportValidity()) void submit(true); } }, "Create account"),
      ),
    );
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      void submit(false);
    });
    this.root.append(h("main", { class: "login-page" }, form));
    handle.focus();
  }

  // ---- the main screen ----

  private async enter(): Promise<void> {
    void setSignedIn(true);
    this.buildShell();
    this.listen();
    this.renderBanner();
    const showMe = (u: User) => {
      $("#me-name").textContent = u.displayName || u.handle;
      $("#me-handle").textContent = "@" + u.handle;
    };
    const known = this.client.session && this.users.get(this.client.session.userId);
    if (known) showMe(known);
    const loadMe = async () => {
      this.me = await this.client.me();
      this.rememberUser(this.me);
      showMe(this.me);
    };
    try {
      await loadMe();
    } catch {
      // Offline at start: once connected.
      const off = this.client.on("connected", () => {
        off();
        loadMe().catch(() => {});
      });
      this.offs.push(off);
    }
    this.client.connect().catch((e) => this.toast(describe(e)));
    // Notifications allowed before: register again (the browser may have
    // changed the subscription, and a new login has a new device).
    if ("Notification" in window && Notification.permission === "granted") void this.enablePush();
    this.schedule("list", "chat", "header");
    this.openFromHash();
  }

  private buildShell(): void {
    this.root.replaceChildren();
    const newChat = h("input", { id: "new-chat-handle", placeholder: "Chat with @handle", autocapitalize: "none", spellcheck: "false", required: true });
    const newE2ee = h("input", { type: "checkbox", id: "new-chat-e2ee" });
    const shell = h(
      "div",
      { class: "shell" },
      h("div", { id: "banner", class: "banner", role: "status", "aria-live": "polite", hidden: true }),
      h(
        "aside",
        { class: "sidebar", "aria-label": "Conversations" },
        h(
          "header",
          { class: "me" },
          h("div", { class: "me-text" }, h("strong", { id: "me-name" }, "…"), h("span", { id: "me-handle", class: "muted" })),
          h("button", { type: "button", id: "logout", class: "ghost", onclick: () => void this.logout() }, "Log out"),
        ),
        h(
          "form",
          {
            class: "new-chat",
            "aria-label": "Start a direct chat",
            onsubmit: (e: Event) => {
              e.preventDefault();
              void this.startDirect(newChat.value.trim(), newE2ee.checked).then((ok) => { if (ok) newChat.value = ""; });
            },
          },
          h("label", { for: "new-chat-handle", class: "sr-only" }, "Start a chat with (handle)"),
          newChat,
          h("button", { type: "submit", id: "new-chat-go" }, "Start"),
          this.e2ee ? h("label", { class: "e2ee-check", for: "new-chat-e2ee" }, newE2ee, " 🔒 End-to-end encrypted") : null,
        ),
        h("button", { type: "button", id: "new-group", class: "wide", onclick: () => this.groupDialog() }, "New group"),
        h("ul", { id: "conversations", class: "conversations", "aria-label": "Conversation list" }),
        h(
          "footer",
          { class: "side-foot" },
          h("button", { type: "button", id: "enable-push", class: "ghost", onclick: () => void this.enablePush() }, "Enable notifications"),
          h("span", { id: "push-state", class: "muted", role: "status" }),
        ),
      ),
      h(
        "main",
        { class: "chat", id: "chat", "aria-label": "Conversation" },
        h("div", { class: "empty", id: "empty" }, h("p", {}, "Pick a conversation, or start one by handle.")),
      ),
      h("div", { id: "toast", class: "toast", role: "alert", hidden: true }),
    );
    this.root.append(shell);
  }

  private listen(): void {
    for (const off of this.offs) off();
    const c = this.client;
    this.offs = [
      c.on("status", (e) => {
        if (e.status === "connecting") this.replaced = false;
        this.renderBanner();
      }),
      // 4004: this device opened a newer connection (another tab or window);
      // the SDK stops (status "stopped" follows) and waits for the user.
      c.on("disconnected", (e) => { if (e.code === 4004) this.replaced = true; }),
      c.on("synced", () => this.schedule("list", "chat", "header")),
      c.on("message", (e) => {
        this.sentAt.set(e.message.conversationId + " " + e.message.senderId, performance.now());
        this.schedule("list");
        if (e.message.conversationId === this.openId) {
          this.schedule("chat");
          this.markRead();
        }
      }),
      c.on("message_changed", (e) => { if (e.message.conversationId === this.openId) this.redrawAll(); }),
      c.on("conversation", (e) => {
        this.schedule("list");
        if (e.conversation.id === this.openId) this.schedule("header");
      }),
      c.on("conversation_removed", (e) => {
        this.schedule("list");
        if (e.conversationId === this.openId) this.close();
      }),
      c.on("typing", (e) => {
        if (e.state === "start") this.typingAt.set(e.conversationId + " " + e.userId, performance.now());
        this.schedule("list");
        if (e.conversationId === this.openId) this.schedule("header");
      }),
      c.on("presence", () => this.schedule("list", "header")),
      c.on("receipt", (e) => { if (e.conversationId === this.openId) this.schedule("header"); }),
      c.on("e2ee_device_added", (e) => {
        if (e.userId !== this.myId()) this.toast(`${this.nameOf(e.userId)} added a new device.`);
      }),
      c.on("e2ee_verification_changed", (e) => this.toast(`${this.nameOf(e.userId)}'s security code changed. Compare it again in Members before you send.`)),
      c.on("e2ee_device_untrusted", (e) => this.toast(`A device of ${this.nameOf(e.userId)} failed its key check: messages to it are not sent.`)),
      c.on("send_failed", (e) => {
        this.toast("Not sent: " + describe(e.error) + ". Retry or delete it in the conversation.");
        if (e.conversationId === this.openId) this.schedule("chat");
      }),
      c.on("session_ended", (e) => {
        this.teardown();
        this.forgetLocally();
        this.showLogin("Signed out: " + describe(e.error));
      }),
    ];
    // Typing indicators expire by time, not by event.
    clearInterval(this.typingTimer);
    this.typingTimer = setInterval(() => {
      if (this.openId && document.querySelector("#typing:not(:empty)")) this.schedule("header");
    }, 1000);
  }

  private teardown(): void {
    for (const off of this.offs) off();
    this.offs = [];
    clearInterval(this.typingTimer);
    for (const d of this.drawn.values()) d.unsub?.();
    this.drawn.clear();
    this.drawnFor = null;
    this.openId = null;
  }

  private async logout(): Promise<void> {
    try {
      await this.client.logout();
    } catch (e) {
      this.toast(describe(e));
    }
    this.teardown();
    await this.forgetLocally();
    location.hash = "";
    this.showLogin();
  }

  /** forgetLocally clears what this browser kept for the signed-out user: names, push, notifications, badge. */
  private async forgetLocally(): Promise<void> {
    this.users.clear();
    this.me = null;
    try {
      localStorage.removeItem(USERS_KEY);
    } catch {
      /* storage refused */
    }
    await signOutLocally();
  }

  /** schedule redraws parts at the next frame (events come in bursts). */
  private schedule(...parts: Array<"list" | "chat" | "header">): void {
    for (const p of parts) this.pending[p] = true;
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      const p = this.pending;
      this.pending = { list: false, chat: false, header: false };
      if (p.list) this.renderList();
      if (p.header) this.renderHeader();
      if (p.chat) this.renderMessages();
    });
  }

  private bannerTimer: ReturnType<typeof setTimeout> | undefined;
  private lostConnection = false;
  private replaced = false;

  /**
   * renderBanner shows the connection state, once it has lasted a second
   * (a token renewal or a start-up connect does not flash it). Offline
   * stays through the reconnect attempts that follow it.
   */
  private renderBanner(): void {
    const banner = document.getElementById("banner");
    if (!banner) return;
    const s = this.client.status;
    document.body.dataset.status = s;
    clearTimeout(this.bannerTimer);
    if (this.replaced && s === "stopped") {
      this.lostConnection = false;
      banner.hidden = false;
      banner.dataset.status = "replaced";
      banner.replaceChildren(
        "This device connected elsewhere. ",
        h("button", {
          type: "button",
          id: "reconnect",
          class: "ghost",
          onclick: () => {
            this.replaced = false;
            this.client.connect().catch((e) => this.toast(describe(e)));
          },
        }, "Reconnect"),
      );
      return;
    }
    if (s === "online" || s === "stopped") this.lostConnection = false;
    if (s === "offline") this.lostConnection = true;
    const text = this.lostConnection && s !== "online" ? STATUS_TEXT.offline : STATUS_TEXT[s] ?? "";
    const show = () => {
      banner.hidden = !text;
      banner.textContent = text;
      banner.dataset.status = this.lostConnection ? "offline" : s;
    };
    if (!text) show();
    else if (banner.hidden) this.bannerTimer = setTimeout(show, 1000);
    else show();
  }

  // ---- people ----

  /** myId is the signed-in user (known from the stored session even before /v1/me answers). */
  private myId(): string | undefined {
    return this.me?.id ?? this.client.session?.userId;
  }

  private user(id: string): User | undefined {
    const u = this.users.get(id);
    if (u || this.fetching.has(id)) return u;
    this.fetching.add(id);
    this.client.user(id).then(
      (u) => {
        this.rememberUser(u);
        this.schedule("list", "header", "chat");
      },
      () => { /* tried again on the next draw after a while */ setTimeout(() => this.fetching.delete(id), 5000); },
    );
    return undefined;
  }

  private nameOf(id: string): string {
    if (id === this.myId()) return "You";
    const u = this.user(id);
    return u ? u.displayName || u.handle : "…";
  }

  private other(c: ConversationState): string | undefined {
    return c.members.find((m) => m.userId !== this.myId())?.userId;
  }

  private titleOf(c: ConversationState): string {
    if (c.kind === "group") return c.title || "Group";
    const o = this.other(c);
    return o ? this.nameOf(o) : c.title || "Direct chat";
  }

  private online(c: ConversationState): boolean {
    if (c.kind !== "direct") return false;
    const o = this.other(c);
    return !!o && this.client.presence(o).state === "online";
  }

  private typingLine(c: ConversationState): string {
    const ids = this.client.typingUsers(c.id).filter((id) => {
      const k = c.id + " " + id;
      return id !== this.myId() && (this.typingAt.get(k) ?? 0) > (this.sentAt.get(k) ?? -1);
    });
    if (ids.length === 0) return "";
    if (c.kind === "direct") return "typing…";
    const names = ids.map((id) => this.nameOf(id));
    return names.length === 1 ? `${names[0]} is typing…` : `${names.join(", ")} are typing…`;
  }

  // ---- the list ----

  private renderList(): void {
    const ul = document.getElementById("conversations");
    if (!ul) return;
    const convs = this.client.conversations();
    let unread = 0;
    const items = convs.map((c) => {
      unread += c.unreadCount;
      const title = this.titleOf(c);
      const typing = this.typingLine(c);
      const last = c.lastMessage;
      const preview = typing || (last ? (last.senderId === this.myId() ? "You: " : c.kind === "group" ? this.nameOf(last.senderId) + ": " : "") + (last.e2ee?.state === "undecryptable" ? "Waiting for this message" : previewOf(last.body, last.deleted)) : "No messages yet");
      const online = this.online(c);
      return h(
        "li",
        {},
        h(
          "button",
          {
            type: "button",
            class: "conv" + (c.id === this.openId ? " active" : "") + (c.unreadCount > 0 ? " unread" : ""),
            "data-id": c.id,
            "aria-current": c.id === this.openId ? "true" : undefined,
            "aria-label": `${title}${c.e2ee ? ", end-to-end encrypted" : ""}${this.isRequest(c) ? ", message request" : ""}${online ? ", online" : ""}${c.unreadCount ? `, ${c.unreadCount} unread` : ""}`,
            onclick: () => { location.hash = "#/c/" + c.id; },
          },
          avatar(title, c.kind === "direct" ? this.other(c) ?? c.id : c.id, online),
          h(
            "span",
            { class: "conv-text" },
            h("span", { class: "conv-top" }, h("span", { class: "conv-title" }, c.e2ee ? lock() : null, title), this.isRequest(c) ? h("span", { class: "tag" }, "Request") : null, h("time", { class: "muted" }, last ? timeOf(last.createdAt) : "")),
            h("span", { class: "conv-bottom" }, h("span", { class: "conv-last" + (typing ? " typing" : "") }, preview), c.unreadCount > 0 ? h("span", { class: "badge", "aria-hidden": "true" }, String(c.unreadCount)) : null),
          ),
        ),
      );
    });
    // Redrawn whole; a keyboard user's place in the list is kept.
    const focused = ul.contains(document.activeElement) ? (document.activeElement as HTMLElement).dataset.id : undefined;
    ul.replaceChildren(...items);
    if (focused) ul.querySelector<HTMLElement>(`.conv[data-id="${CSS.escape(focused)}"]`)?.focus();
    if (convs.length === 0) ul.append(h("li", { class: "muted none" }, "No conversations yet."));
    document.title = unread > 0 ? `(${unread}) Parley` : "Parley";
  }

  // ---- the open conversation ----

  private openFromHash(): void {
    const m = /^#\/c\/([\w-]+)$/.exec(location.hash);
    if (!m) {
      if (this.openId) this.close();
      return;
    }
    this.open(m[1]);
  }

  private open(id: string): void {
    if (!document.getElementById("chat")) return;
    if (this.openId === id && this.drawnFor === id) return;
    this.openId = id;
    const chat = $("#chat");
    const composer = h("textarea", { id: "composer", rows: 1, placeholder: "Message", "aria-describedby": "composer-hint", enterkeyhint: "send" });
    composer.addEventListener("keydown", (e: KeyboardEvent) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        this.sendFrom(composer);
      }
    });
    composer.addEventListener("input", () => {
      if (!this.openId) return;
      this.client.typing(this.openId, composer.value.trim() ? "start" : "stop");
      composer.style.height = "auto";
      composer.style.height = Math.min(composer.scrollHeight, 160) + "px";
    });
    const list = h("ol", { id: "messages", class: "messages", role: "log", "aria-live": "polite", "aria-relevant": "additions", "aria-label": "Messages", tabindex: 0 });
    const scroller = h("div", { class: "scroller", id: "scroller" }, h("div", { id: "older", class: "older" }, h("button", { type: "button", id: "load-older", class: "ghost", onclick: () => void this.loadOlder() }, "Load older messages")), list);
    scroller.addEventListener("scroll", () => {
      if (scroller.scrollTop < 60) void this.loadOlder();
    });
    chat.replaceChildren(
      h(
        "header",
        { class: "chat-head" },
        h("button", { type: "button", class: "back ghost", "aria-label": "Back to conversations", onclick: () => { location.hash = ""; } }, "‹"),
        h("div", { id: "chat-avatar" }),
        h("div", { class: "chat-title" }, h("h2", { id: "chat-title" }), h("span", { id: "chat-sub", class: "muted" }), h("span", { id: "typing", class: "typing", "aria-live": "polite" })),
        h("button", { type: "button", id: "members", class: "ghost", onclick: () => this.membersDialog() }, "Members"),
      ),
      h("div", { id: "request-bar", class: "request-bar", role: "region", "aria-label": "Message request", hidden: true }),
      scroller,
      h(
        "form",
        {
          class: "composer",
          onsubmit: (e: Event) => {
            e.preventDefault();
            this.sendFrom(composer);
          },
        },
        h("label", { for: "composer", class: "sr-only" }, "Message"),
        attachControl(this.client, () => this.openId, () => document.getElementById("messages"), (e) => this.toast(describe(e))),
        composer,
        h("span", { id: "composer-hint", class: "sr-only" }, "Enter sends, Shift+Enter starts a new line"),
        h("button", { type: "submit", class: "primary", id: "send" }, "Send"),
      ),
    );
    for (const d of this.drawn.values()) d.unsub?.();
    this.drawn.clear();
    this.drawnFor = id;
    document.body.classList.add("chat-open");
    this.renderHeader();
    this.renderMessages(true);
    this.renderList();
    this.markRead();
    composer.focus();
    // A conversation opened fresh shows at least a page.
    if (this.client.messages(id).length < 20) void this.loadOlder();
  }

  private close(): void {
    for (const d of this.drawn.values()) d.unsub?.();
    this.drawn.clear();
    this.drawnFor = null;
    this.openId = null;
    document.body.classList.remove("chat-open");
    // A conversation closed by an event (left, removed) leaves no stale
    // link: clicking it again must be a hash change.
    if (location.hash.startsWith("#/c/")) history.replaceState(null, "", location.pathname + location.search);
    const chat = document.getElementById("chat");
    chat?.replaceChildren(h("div", { class: "empty", id: "empty" }, h("p", {}, "Pick a conversation, or start one by handle.")));
    this.schedule("list");
  }

  private renderHeader(): void {
    if (!this.openId) return;
    const c = this.client.conversation(this.openId);
    const title = document.getElementById("chat-title");
    if (!title) return;
    if (!c) {
      title.textContent = "Loading…";
      return;
    }
    const name = this.titleOf(c);
    title.replaceChildren(...(c.e2ee ? [lock()] : []), name);
    $("#chat-avatar").replaceChildren(avatar(name, c.kind === "direct" ? this.other(c) ?? c.id : c.id, this.online(c)));
    let sub = "";
    if (c.kind === "group") {
      sub = c.membersPaged ? `${c.memberCount.toLocaleString()} members` : c.members.map((m) => this.nameOf(m.userId)).join(", ");
    } else {
      const o = this.other(c);
      const p = o ? this.client.presence(o) : undefined;
      sub = p?.state === "online" ? "online" : p?.lastSeen ? "last seen " + timeOf(p.lastSeen) : "";
    }
    $("#chat-sub").textContent = sub;
    const typing = this.typingLine(c);
    const t = $("#typing");
    if (t.textContent !== typing) t.textContent = typing;
    $("#chat-sub").hidden = !!typing;
    ($("#members") as HTMLButtonElement).hidden = c.kind !== "group" && !c.e2ee;
    this.renderRequest(c);
  }

  /** isRequest: the signed-in user was put into c by a stranger and has not accepted. */
  private isRequest(c: ConversationState): boolean {
    return !this.accepted.has(c.id) && !!(c.members.find((m) => m.userId === this.myId()) ?? c.me)?.request;
  }

  /** renderRequest shows Accept / Decline / Block for a message request (docs/protocol.md, section 16). */
  private renderRequest(c: ConversationState): void {
    const bar = document.getElementById("request-bar");
    if (!bar) return;
    const show = this.isRequest(c);
    if (bar.hidden === !show && (!show || bar.dataset.id === c.id)) return;
    bar.hidden = !show;
    bar.dataset.id = c.id;
    if (!show) return;
    const decide = async (path: string, body?: unknown) => {
      bar.querySelectorAll("button").forEach((b) => (b.disabled = true));
      try {
        await this.client.request("POST", `/v1/conversations/${encodeURIComponent(c.id)}/${path}`, body);
        if (path === "accept") {
          // The server's "accepted" frame updates the SDK's state; until it comes, this says it.
          this.accepted.add(c.id);
          bar.hidden = true;
          this.schedule("list");
        } else {
          location.hash = "";
        }
      } catch (e) {
        this.toast(describe(e));
        bar.querySelectorAll("button").forEach((b) => (b.disabled = false));
      }
    };
    const who = c.kind === "direct" ? this.titleOf(c) : "Someone you have not talked with";
    bar.replaceChildren(
      h("p", {}, c.kind === "direct" ? `${who} wants to chat with you.` : `${who} added you to this group.`, h("span", { class: "muted" }, " They will not see that you read their messages until you accept.")),
      h("div", { class: "row" },
        h("button", { type: "button", class: "primary", id: "request-accept", onclick: () => void decide("accept") }, "Accept"),
        h("button", { type: "button", id: "request-decline", onclick: () => void decide("decline") }, "Decline"),
        h("button", { type: "button", class: "danger", id: "request-block", onclick: () => void decide("decline", { block: true }) }, "Block"),
      ),
    );
  }

  /** messageKey names a message across its pending and acked forms. */
  private key(m: MessageView): string {
    return m.clientMsgId ? "c:" + m.senderId + ":" + m.clientMsgId : "i:" + m.id;
  }

  private redrawAll(): void {
    for (const d of this.drawn.values()) {
      d.unsub?.();
      d.el.remove();
    }
    this.drawn.clear();
    this.renderMessages();
  }

  private renderMessages(forceBottom = false): void {
    const id = this.openId;
    const list = document.getElementById("messages");
    const scroller = document.getElementById("scroller");
    if (!id || !list || !scroller) return;
    const c = this.client.conversation(id);
    const views = this.client.messages(id);
    const nearBottom = forceBottom || scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
    const keep = new Set<string>();
    let prev: Element | null = null;
    let prevSender = "";
    for (const m of views) {
      const k = this.key(m);
      keep.add(k);
      let d = this.drawn.get(k);
      if (d && d.seq !== m.seq) {
        // The pending send was acked: its status observable is another one.
        d.unsub?.();
        d.el.remove();
        this.drawn.delete(k);
        d = undefined;
      }
      if (!d) {
        d = this.drawMessage(m, c);
        this.drawn.set(k, d);
      }
      const firstOfRun = m.senderId !== prevSender;
      d.el.classList.toggle("first", firstOfRun);
      prevSender = m.senderId;
      const want: Element | null = prev ? prev.nextElementSibling : list.firstElementChild;
      if (want !== d.el) {
        if (prev) prev.after(d.el);
        else list.prepend(d.el);
      }
      prev = d.el;
    }
    for (const [k, d] of this.drawn) {
      if (!keep.has(k)) {
        d.unsub?.();
        d.el.remove();
        this.drawn.delete(k);
      }
    }
    const older = document.getElementById("older");
    if (older) older.hidden = this.atStart.has(id);
    if (nearBottom) scroller.scrollTop = scroller.scrollHeight;
  }

  private drawMessage(m: MessageView, c: ConversationState | undefined): Drawn {
    const mine = m.senderId === this.myId() || (m.seq === 0 && !m.id);
    const group = c?.kind === "group";
    const tick = mine ? h("span", { class: "tick" }) : null;
    const body = m.deleted
      ? h("em", { class: "muted" }, "Message deleted")
      : m.e2ee?.state === "undecryptable"
        ? h("em", { class: "muted waiting", title: "Not readable on this device yet (" + (m.e2ee.reason || "") + ")" }, "🔒 Waiting for this message")
        : h("p", { class: "body" }, m.body);
    const el = h(
      "li",
      { class: "msg " + (mine ? "mine" : "theirs"), "data-seq": m.seq, "data-key": this.key(m) },
      h(
        "div",
        { class: "bubble" },
        !mine && group ? h("span", { class: "sender", style: `color:hsl(${hue(m.senderId)} 55% 38%)` }, this.nameOf(m.senderId)) : null,
        m.deleted ? null : attachmentsView(this.client, m.attachments),
        body,
        h("span", { class: "meta" }, h("time", { datetime: m.createdAt || undefined }, timeOf(m.createdAt)), tick),
      ),
    );
    // A refused send stays (with its text) until retried or deleted.
    const actions =
      mine && m.seq === 0 && m.clientMsgId
        ? h(
            "span",
            { class: "failed-actions", hidden: true },
            h("button", { type: "button", class: "ghost retry", "aria-label": "Retry sending this message", onclick: () => this.retrySend(m.clientMsgId) }, "Retry"),
            h("button", { type: "button", class: "ghost discard", "aria-label": "Delete this unsent message", onclick: () => this.discardSend(m.clientMsgId) }, "Delete"),
          )
        : null;
    if (actions) el.querySelector(".bubble")?.append(actions);
    let unsub: (() => void) | null = null;
    if (tick) {
      unsub = m.status.subscribe((s) => {
        paintTick(tick, s, group);
        if (actions) actions.hidden = s.state !== "failed";
      });
    }
    return { el, tick, seq: m.seq, unsub };
  }

  private retrySend(clientMsgId: string): void {
    try {
      const out = this.client.retry(clientMsgId);
      out?.acked.catch(() => { /* shown through send_failed and the status */ });
    } catch (e) {
      this.toast(describe(e));
    }
    this.renderMessages(true);
    this.schedule("list");
    (document.getElementById("composer") as HTMLElement | null)?.focus();
  }

  private discardSend(clientMsgId: string): void {
    this.client.discard(clientMsgId);
    this.renderMessages();
    (document.getElementById("composer") as HTMLElement | null)?.focus();
  }

  private sendFrom(composer: HTMLTextAreaElement): void {
    const id = this.openId;
    const text = composer.value.trim();
    if (!id || !text) return;
    composer.value = "";
    composer.style.height = "auto";
    const out = this.client.send(id, text);
    out.acked.catch(() => { /* shown through send_failed and the status */ });
    this.renderMessages(true);
    this.schedule("list");
  }

  private markRead(): void {
    const id = this.openId;
    if (!id || document.visibilityState !== "visible") return;
    // Read on this device: its own notifications for the conversation go
    // (the server's read push closes them on the user's other devices).
    void closeNotifications(id);
    const c = this.client.conversation(id);
    if (!c || (c.unreadCount === 0 && c.readSeq >= c.lastSeq)) return;
    // Offline, the read goes out with the next one.
    this.client.markRead(id).catch(() => {});
    this.schedule("list");
  }

  private async loadOlder(): Promise<void> {
    const id = this.openId;
    if (!id || this.loadingOlder || this.atStart.has(id)) return;
    const scroller = document.getElementById("scroller");
    if (!scroller) return;
    this.loadingOlder = true;
    const btn = document.getElementById("load-older") as HTMLButtonElement | null;
    if (btn) btn.disabled = true;
    try {
      const n = await this.client.loadOlder(id, 50);
      if (this.openId !== id) return;
      if (n === 0) this.atStart.add(id);
      // Older messages are not news: the log is busy while they go in.
      const list = document.getElementById("messages");
      list?.setAttribute("aria-busy", "true");
      const before = scroller.scrollHeight - scroller.scrollTop;
      this.renderMessages();
      scroller.scrollTop = scroller.scrollHeight - before;
      setTimeout(() => list?.removeAttribute("aria-busy"), 0);
    } catch (e) {
      this.toast(describe(e));
    } finally {
      this.loadingOlder = false;
      if (btn) btn.disabled = false;
    }
  }

  // ---- creating conversations, members ----

  private async startDirect(handle: string, e2ee = false): Promise<boolean> {
    if (!handle) return false;
    try {
      const u = await this.client.findUser(handle.replace(/^@/, ""));
      this.rememberUser(u);
      const c = await this.client.createDirect(u.id, { e2ee });
      location.hash = "#/c/" + c.id;
      this.schedule("list");
      return true;
    } catch (e) {
      this.toast(describe(e));
      return false;
    }
  }

  private dialog(title: string, body: Node[], onSubmit: (close: () => void, err: HTMLElement) => Promise<void>, submitText: string): HTMLDialogElement {
    const err = h("p", { class: "form-error", role: "alert" });
    const dlg = h("dialog", { class: "dialog", "aria-labelledby": "dialog-title" });
    const close = () => { dlg.close(); dlg.remove(); };
    const form = h(
      "form",
      {
        onsubmit: (e: Event) => {
          e.preventDefault();
          err.textContent = "";
          onSubmit(close, err).catch((x) => { err.textContent = describe(x); });
        },
      },
      h("h2", { id: "dialog-title" }, title),
      ...body,
      err,
      h("div", { class: "row end" }, h("button", { type: "button", class: "ghost", onclick: close }, "Close"), h("button", { type: "submit", class: "primary" }, submitText)),
    );
    dlg.append(form);
    dlg.addEventListener("close", () => dlg.remove());
    document.body.append(dlg);
    dlg.showModal();
    return dlg;
  }

  private groupDialog(): void {
    const title = h("input", { id: "group-title", required: true, maxlength: 100 });
    const members = h("input", { id: "group-members", placeholder: "alice, bob", autocapitalize: "none", spellcheck: "false" });
    const enc = h("input", { type: "checkbox", id: "group-e2ee" });
    this.dialog(
      "New group",
      [
        h("label", { for: "group-title" }, "Name"),
        title,
        h("label", { for: "group-members" }, "Members (handles, comma-separated)"),
        members,
        this.e2ee ? h("label", { class: "e2ee-check", for: "group-e2ee" }, enc, " 🔒 End-to-end encrypted (for good)") : null,
      ].filter((x): x is HTMLInputElement | HTMLLabelElement => !!x),
      async (close) => {
        const handles = members.value.split(/[\s,]+/).map((s) => s.replace(/^@/, "")).filter(Boolean);
        const ids: string[] = [];
        for (const hd of handles) {
          const u = await this.client.findUser(hd);
          this.rememberUser(u);
          ids.push(u.id);
        }
        const c = await this.client.createGroup(title.value.trim(), ids, { e2ee: enc.checked });
        close();
        location.hash = "#/c/" + c.id;
        this.schedule("list");
      },
      "Create",
    );
    title.focus();
  }

  private membersDialog(): void {
    const id = this.openId;
    const c = id ? this.client.conversation(id) : undefined;
    if (!id || !c) return;
    const list = h("ul", { class: "member-list", id: "member-list" });
    const direct = c.kind === "direct";
    // A big group (membersPaged) lists no members: they come from the
    // server a page at a time, with a button for the next page.
    let paged: Member[] = [];
    let next: string | undefined;
    const more = h("button", { type: "button", class: "ghost", id: "more-members", hidden: true, onclick: () => void loadPage() }, "More members");
    const loadPage = async (fromStart = false) => {
      try {
        const page = await this.client.members(id, { after: fromStart ? undefined : next, limit: 100 });
        paged = fromStart ? page.members : paged.concat(page.members);
        next = page.next;
        draw();
      } catch (e) {
        this.toast(describe(e));
      }
    };
    const draw = () => {
      const cur = this.client.conversation(id);
      more.hidden = !cur?.membersPaged || !next;
      list.replaceChildren(
        ...(cur?.membersPaged ? paged : cur?.members ?? []).map((m) =>
          h(
            "li",
            { "data-user": m.userId },
            h("span", {}, this.nameOf(m.userId), m.role === "admin" || m.role === "owner" ? h("span", { class: "muted" }, " · " + m.role) : null),
            cur?.e2ee && m.userId !== this.myId() ? this.safetyView(m.userId) : null,
            direct ? null : h(
              "button",
              {
                type: "button",
                class: "ghost danger",
                "aria-label": m.userId === this.myId() ? "Leave the group" : `Remove ${this.nameOf(m.userId)}`,
                onclick: async () => {
                  try {
                    await this.client.removeMember(id, m.userId);
                    if (m.userId === this.myId()) {
                      dlg.close();
                      location.hash = "";
                      return;
                    }
                    await refresh();
                  } catch (e) {
                    this.toast(describe(e));
                  }
                },
              },
              m.userId === this.myId() ? "Leave" : "Remove",
            ),
          ),
        ),
      );
    };
    const refresh = async () => {
      // The SDK updates the members from the server's event; draw after it.
      await new Promise((r) => setTimeout(r, 300));
      if (this.client.conversation(id)?.membersPaged) await loadPage(true);
      else draw();
    };
    const add = h("input", { id: "add-member", placeholder: "handle", autocapitalize: "none", spellcheck: "false", required: true });
    const dlg = this.dialog(
      "Members of " + this.titleOf(c),
      direct ? [list] : [list, more, h("label", { for: "add-member" }, "Add someone (handle)"), add],
      async () => {
        const u = await this.client.findUser(add.value.trim().replace(/^@/, ""));
        this.rememberUser(u);
        await this.client.addMember(id, u.id);
        add.value = "";
        await refresh();
      },
      "Add",
    );
    if (direct) dlg.querySelector<HTMLElement>("button[type=submit]")!.hidden = true;
    draw();
    if (c.membersPaged) void loadPage(true);
    const off = this.client.on("conversation", (e) => { if (e.conversation.id === id && dlg.open) draw(); });
    dlg.addEventListener("close", off);
    if (!direct) add.focus();
  }

  /** safetyView shows the safety number shared with userId and a verify button (e2ee conversations). */
  private safetyView(userId: string): HTMLElement {
    const num = h("code", { class: "safety-number", "data-user": userId }, "…");
    const state = h("span", { class: "muted verify-state" });
    const btn = h("button", { type: "button", class: "ghost verify" }, "Mark verified");
    const e2ee = this.e2ee;
    const paint = async () => {
      if (!e2ee) return;
      try {
        num.textContent = await e2ee.safetyNumber(userId);
        const v = await e2ee.verification(userId);
        state.textContent = v === "verified" ? "✓ Verified" : v === "changed" ? "⚠ Changed since you verified" : "Not verified";
        btn.hidden = v === "verified";
      } catch (e) {
        num.textContent = describe(e);
      }
    };
    btn.addEventListener("click", () => void e2ee?.verify(userId).then(paint, (e) => this.toast(describe(e))));
    void paint();
    return h("div", { class: "safety" }, h("span", { class: "muted" }, "Safety number (compare it with them):"), num, h("div", { class: "row" }, state, btn));
  }

  private async enablePush(): Promise<void> {
    const state = $("#push-state");
    state.textContent = "…";
    try {
      const text = await enablePush(this.client);
      state.textContent = text;
      $("#enable-push").hidden = text === "Notifications on.";
    } catch (e) {
      state.textContent = "Notifications unavailable: " + describe(e);
    }
  }

  private toastTimer: ReturnType<typeof setTimeout> | undefined;

  private toast(text: string): void {
    const t = document.getElementById("toast");
    if (!t) return;
    t.textContent = text;
    t.hidden = false;
    clearTimeout(this.toastTimer);
    this.toastTimer = setTimeout(() => { t.hidden = true; }, 5000);
  }
}

function avatar(name: string, id: string, online: boolean): HTMLElement {
  return h(
    "span",
    { class: "avatar", style: `background:hsl(${hue(id)} 55% 45%)`, "aria-hidden": "true" },
    initials(name === "…" ? "?" : name),
    online ? h("span", { class: "dot", title: "online" }) : null,
  );
}

/** lock is the marker of an end-to-end encrypted conversation. */
function lock(): HTMLElement {
  return h("span", { class: "lock", title: "End-to-end encrypted", "aria-label": "End-to-end encrypted", role: "img" }, "🔒 ");
}

function previewOf(body: string, deleted?: boolean): string {
  if (deleted) return "Message deleted";
  const line = body.replace(/\s+/g, " ").trim();
  return line.length > 80 ? line.slice(0, 79) + "…" : line;
}

/** paintTick shows a message's state: a clock while sending, ✓ sent, ✓✓ delivered, blue ✓✓ read; groups add "read by k of n". */
function paintTick(el: HTMLElement, s: MessageStatus, group: boolean): void {
  el.dataset.state = s.state;
  let text: string;
  let label: string;
  switch (s.state) {
    case "sending":
      text = "Sending…";
      label = "Sending";
      break;
    case "failed":
      text = "Not sent";
      label = "Not sent" + (s.error ? ": " + describe(s.error) : "");
      break;
    case "sent":
      text = "✓";
      label = "Sent";
      break;
    case "delivered":
      text = "✓✓";
      label = "Delivered";
      break;
    default:
      text = "✓✓";
      label = "Read";
  }
  if (group && s.state !== "sending" && s.state !== "failed") {
    text += ` read by ${s.readCount} of ${s.memberCount}`;
    label += `: delivered to ${s.deliveredCount} of ${s.memberCount}, read by ${s.readCount} of ${s.memberCount}`;
  }
  el.textContent = text;
  el.setAttribute("aria-label", label);
  el.title = label;
}

/** describe turns an error into a line for a person. */
export function describe(e: unknown): string {
  if (e instanceof ParleyError) {
    switch (e.code) {
      case "network":
        return "The server cannot be reached.";
      case "unauthorized":
        return "Wrong handle or password.";
      case "not_found":
      case "user_not_found":
        return "No such user.";
      case "rate_limited":
        return "Too many attempts; try again " + (e.retryAfter ? `in ${e.retryAfter} s.` : "later.");
      default:
        return e.message || e.code;
    }
  }
  return e instanceof Error ? e.message : String(e);
}

