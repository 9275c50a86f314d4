// One IndexedDB object store of the training worker's own (privacy ledgers, kept updates):
// open it, and run one request in a strict (durable) transaction.

/** Opens database `db` (version 1) with its one object store `store`. */
export function open(db, store) {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(db, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(store);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error ?? new Error("cannot open IndexedDB"));
    request.onblocked = () => reject(new Error("IndexedDB is blocked by another tab"));
  });
}

/** Runs `work(objectStore)` (one request) in a `mode` transaction; resolves with the
 * request's result once the transaction committed. */
export async function withStore(db, store, mode, work) {
  const handle = await open(db, store);
  try {
    return await new Promise((resolve, reject) => {
      const tx = handle.transaction(store, mode, { durability: "strict" });
      let result;
      const request = work(tx.objectStore(store));
      request.onsuccess = () => {
        result = request.result;
      };
      tx.oncomplete = () => resolve(result);
      tx.onerror = () => reject(tx.error ?? new Error("IndexedDB transaction failed"));
      tx.onabort = () => reject(tx.error ?? new Error("IndexedDB transaction aborted"));
    });
  } finally {
    handle.close();
  }
}
