// Compiles as a Node or React Native app would use the SDK: `ws`'s
// WebSocket class and an AsyncStorage-shaped object must be accepted.
import { ParleyClient, AsyncStorageAdapter, ParleyError, type ParleyEvent } from "@parley/client";
import { WebSocket } from "ws";

const asyncStorage = {
  getItem: async (_k: string): Promise<string | null> => null,
  setItem: async (_k: string, _v: string) => {},
  removeItem: async (_k: string) => {},
  getAllKeys: async (): Promise<readonly string[]> => [],
};
const client = new ParleyClient({ server: "http://127.0.0.1:8080", WebSocket, storage: new AsyncStorageAdapter(asyncStorage) });
client.setAppState("background");
export async function loop(): Promise<void> {
  for await (const e of client.events()) {
    const ev: ParleyEvent = e;
    if (ev.type === "session_ended") throw new ParleyError(ev.error.code);
  }
}
