// Compiles as a browser app would use the SDK (lib DOM): the DOM's WebSocket
// and fetch must be accepted as they are.
import { ParleyClient, IndexedDBStorage, type Message, type MessageStatus } from "@parley/client";

const client = new ParleyClient({ server: location.origin, WebSocket, fetch, storage: new IndexedDBStorage() });
client.on("message", (e) => {
  const m: Message = e.message;
  document.title = m.body;
});
const out = client.send("c", "hi");
out.status.subscribe((s: MessageStatus) => console.log(s.state, s.deliveredCount, s.memberCount));
void client.registerPush({ kind: "webpush", subscription: { endpoint: "https://push.example/x", keys: { p256dh: "a", auth: "b" } } });
