// The inference worker: B3O's networks on WebAssembly (b3o_infer, no training code), off the page's
// thread. Start it with `new Worker(new URL("infer-worker.js", base), { type: "module" })`.
// Operations and replies: wasm-client/ENGINE.md.
import init, * as engine from "./b3o_infer.js";
import { serve, bytesOf } from "./protocol.js";

const ready = init().then(() => engine.init_engine());

serve(ready, {
  capabilities: () => engine.capabilities(),

  load: ({ server = "", model, token }) => {
    if (typeof model !== "string") throw new Error("`model` must be a deployment name");
    return engine.loadModel(server ?? "", model, token || undefined);
  },

  // A package and ONNX bytes at hand (pages that ship their own model, tests, benchmarks).
  load_bytes: async ({ package: pkg, onnx }) =>
    engine.loadModelBytes(typeof pkg === "string" ? pkg : JSON.stringify(pkg), await bytesOf(onnx, "onnx")),

  unload: ({ model }) => engine.unloadModel(model),

  clear_cache: () => engine.clearModelCache(),

  predict_csv: async ({ model, csv }, _id, progress) => {
    const text = typeof csv === "string" ? csv : new TextDecoder().decode(await bytesOf(csv, "csv"));
    return engine.predictCsv(model, text, (rows) => progress({ phase: "predicting", rows }));
  },

  predict_rows: ({ model, rows }) => engine.predictRows(model, rows),

  predict_image: async ({ model, bytes }) => engine.predictImage(model, await bytesOf(bytes, "bytes")),

  predict_pixels: ({ model, pixels }) =>
    engine.predictPixels(model, pixels instanceof Float32Array ? pixels : Float32Array.from(pixels ?? [])),

  predict_raw: ({ model, inputs, batch }) =>
    engine.predictRaw(model, inputs instanceof Float32Array ? inputs : Float32Array.from(inputs ?? []), batch ?? 1),

  bench_inference: ({ model, batch = 1, samples = 200, calls = 20 }) => engine.benchInference(model, batch, samples, calls),
});
