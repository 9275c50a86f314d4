// The member's privacy ledgers (differential privacy), in this browser's IndexedDB: database
// `b3o-privacy`, store `ledgers`, one JSON text per group and membership
// (`group-<id>-member-<id>`). The training worker counts each round here, durably (a strict
// transaction), before the update leaves; the server never holds them.
import * as idb from "./idb.js";

const DB = "b3o-privacy";
const STORE = "ledgers";

function withStore(mode, work) {
  return idb.withStore(DB, STORE, mode, work);
}

/** The ledger under `key` (JSON text), or null. */
export async function load(key) {
  const value = await withStore("readonly", (store) => store.get(key));
  return typeof value === "string" ? value : null;
}

/** Stores `json` under `key`; resolves once the transaction committed. */
export async function save(key, json) {
  await withStore("readwrite", (store) => store.put(String(json), key));
}

/** Every ledger of this browser: `{key: ledger}`. */
export async function all() {
  const db = await idb.open(DB, STORE);
  try {
    return await new Promise((resolve, reject) => {
      const out = {};
      const tx = db.transaction(STORE, "readonly");
      const cursor = tx.objectStore(STORE).openCursor();
      cursor.onsuccess = () => {
        const c = cursor.result;
        if (c) {
          try {
            out[c.key] = JSON.parse(c.value);
          } catch {
            // not ours: skip
          }
          c.continue();
        }
      };
      tx.oncomplete = () => resolve(out);
      tx.onerror = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}
