// A member's finished update, kept in this browser's IndexedDB until the server has it
// (database `b3o-kept`, store `updates`, one `{round, bytes}` per group and membership:
// `group-<id>-member-<id>`). The training worker stores it (a strict transaction) before the
// upload and removes it once the server answered; a tab closed in between sends it at the
// next visit (wasm-client/src/fl/kept.rs). Only this browser ever holds it.
import * as idb from "./idb.js";

const DB = "b3o-kept";
const STORE = "updates";

function withStore(mode, work) {
  return idb.withStore(DB, STORE, mode, work);
}

/** The update kept under `key` (`{round, bytes: Uint8Array}`), or null. */
export async function load(key) {
  const value = await withStore("readonly", (store) => store.get(key));
  if (!value || typeof value.round !== "number" || !(value.bytes instanceof Uint8Array)) {
    return null;
  }
  return value;
}

/** Keeps `bytes` (trained in `round`) under `key`; resolves once the transaction committed. */
export async function save(key, round, bytes) {
  await withStore("readwrite", (store) =>
    store.put({ round, bytes: new Uint8Array(bytes), kept_at: Date.now() }, key));
}

/** Forgets the update under `key`. */
export async function remove(key) {
  await withStore("readwrite", (store) => store.delete(key));
}
