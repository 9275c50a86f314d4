// The Web Worker side of the engine's message protocol (see wasm-client/ENGINE.md), shared by
// both workers: requests `{id, op, ...args}`; replies `{id, ok: true, result}` or
// `{id, ok: false, error}`; any number of `{id, progress}` before the reply.

/** The message of anything thrown (JsError from Rust, a DOMException, a string). */
export function message(err) {
  if (err instanceof Error) return err.message || String(err);
  if (typeof err === "string") return err;
  try {
    return JSON.stringify(err);
  } catch {
    return String(err);
  }
}

/**
 * Serves `ops` (name -> async (args, id) => result) on this worker once `ready` resolves.
 * A trap inside WebAssembly (a Rust panic) leaves the instance unusable: the reply carries
 * `fatal: true` and the worker closes itself; the page starts a new one.
 */
export function serve(ready, ops) {
  const post = (msg) => self.postMessage(msg);
  self.onmessage = async (event) => {
    const data = event.data || {};
    const { id, op, ...args } = data;
    if (typeof id !== "number") {
      post({ id: null, ok: false, error: "a request needs a numeric `id`" });
      return;
    }
    try {
      await ready;
      const handler = Object.hasOwn(ops, op) ? ops[op] : null;
      if (!handler) throw new Error(`unknown operation \`${op}\``);
      const result = await handler(args, id, (progress) => post({ id, progress }));
      post({ id, ok: true, result: result === undefined ? null : result });
    } catch (err) {
      const fatal = err instanceof WebAssembly.RuntimeError;
      post(fatal ? { id, ok: false, error: message(err), fatal } : { id, ok: false, error: message(err) });
      if (fatal) self.close();
    }
  };
}

/** Bytes of a File, Blob, ArrayBuffer, typed array or array of numbers. */
export async function bytesOf(value, what) {
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (typeof Blob !== "undefined" && value instanceof Blob) return new Uint8Array(await value.arrayBuffer());
  if (Array.isArray(value)) return Uint8Array.from(value);
  throw new Error(`\`${what}\` must be a File, Blob, ArrayBuffer or Uint8Array`);
}
