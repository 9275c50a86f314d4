// The training worker: burn on WebGPU or the CPU and the federated learning client
// (b3o_train, the large bundle), started only when a person starts training:
// `new Worker(new URL("train-worker.js", base), { type: "module" })`.
// Operations and replies: wasm-client/ENGINE.md.
import init, * as engine from "./b3o_train.js";
import { serve, bytesOf } from "./protocol.js";
import * as privacyLedger from "./privacy-ledger.js";
import * as keptUpdates from "./kept-updates.js";

// The participant keeps its privacy ledgers and its unsent update here
// (wasm-client/src/fl/browser.rs).
globalThis.b3oPrivacyLedger = privacyLedger;
globalThis.b3oKeptUpdates = keptUpdates;

const ready = init().then(() => engine.init_engine());

// The member's rows of a request: the CSV's bytes, or each image's label, name and bytes.
async function localData(args) {
  const { file, files, ...rest } = args;
  let data;
  let images = [];
  if ((rest.kind ?? "csv") === "csv") {
    data = await bytesOf(file, "file");
  } else {
    images = await Promise.all(
      (files ?? []).map(async (f, i) => ({
        label: String(f.label ?? ""),
        name: String(f.name ?? `image ${i + 1}`),
        bytes: await bytesOf(f.bytes ?? f.file, `files[${i}].bytes`),
      })),
    );
  }
  return { rest, data, images };
}

serve(ready, {
  capabilities: () => engine.trainCapabilities(),

  train_step_check: ({ backend = "cpu", problem = "mlp", steps = 3, batch = 8 }) =>
    engine.trainStepCheck(backend, problem, steps, batch),

  bench_training: ({ backend = "auto", problem = "mlp", rows = 2048, batch_size = 32, epochs = 1 }) =>
    engine.benchTraining(backend, problem, rows, batch_size, epochs),

  run: async (args, id, progress) => {
    const { rest, data, images } = await localData(args);
    return engine.runClient(id, { kind: "csv", ...rest }, data, images, progress);
  },

  upload_kept: (args) => engine.uploadKept(args),

  evaluate_version: async (args) => {
    const { rest, data, images } = await localData(args);
    return engine.evaluateVersion({ kind: "csv", ...rest }, data, images);
  },

  cancel: ({ target }) => engine.cancelRun(target),
});
