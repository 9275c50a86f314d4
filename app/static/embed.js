/*
 * B3O Edge embed widget: one script tag on a partner site, then
 *
 *   <script src="https://b3o.example.org/embed.js" async></script>
 *   <b3o-predict model="churn"></b3o-predict>
 *
 * The element runs the deployed model in the visitor's browser with B3O Edge's inference
 * engine, loaded from the B3O server (the `server` attribute, else the origin this script came
 * from). The visitor's file is read on their machine and never uploaded.
 *
 * A worker script cannot be started from another origin, so the widget starts a module worker
 * from a `blob:` URL of its own page that imports the engine by absolute URL (the engine files
 * are served with `Access-Control-Allow-Origin: *`). The model itself is read through its
 * package, which the server gives to pages of the partner sites its owner listed (private or
 * public models), or of any site when the owner of a public model allows that; any other site
 * sees why: no such model available to it (not deployed, or private and this site not listed:
 * the same answer, names reveal nothing), a public model embedded by listed sites only, or a
 * server that cannot be reached.
 *
 * The element's `data-state` attribute says where it stands (`loading`, `ready`, `working`,
 * `done`, `refused`, `error`) and, when refused, `data-reason` why (`not-available`,
 * `site-not-listed`, `refused`, `unreachable`, `server-error`), for the partner's CSS and for
 * tests; parts (`::part(status)`,
 * `::part(input)`, `::part(result)`) can be styled.
 */
(() => {
  "use strict";
  if (typeof window === "undefined" || !window.customElements || customElements.get("b3o-predict")) {
    return;
  }
  const SCRIPT_ORIGIN = (() => {
    try {
      return new URL(document.currentScript && document.currentScript.src).origin;
    } catch (_) {
      return "";
    }
  })();

  const STYLE = `
    :host { display: block; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
      color: #1b1f24; border: 1px solid #d0d7de; border-radius: 8px; padding: 1rem; max-width: 40rem;
      background: #fff; }
    h2 { font-size: 1.05rem; margin: 0 0 .5rem; }
    p { margin: .4rem 0; }
    [part=status] { color: #57606a; }
    :host([data-state=refused]) [part=status], :host([data-state=error]) [part=status] {
      color: #b42318; background: #fef3f2; border: 1px solid #fecdca; border-radius: 6px; padding: .5rem .75rem; }
    label { display: block; font-weight: 600; margin-top: .5rem; }
    input[type=file] { margin: .25rem 0 .5rem; max-width: 100%; }
    a.download { display: inline-block; background: #0b6bcb; color: #fff; border-radius: 6px;
      padding: .4rem .9rem; text-decoration: none; font-weight: 600; }
    a.download:focus-visible, input:focus-visible { outline: 3px solid #f79009; outline-offset: 2px; }
    .table { overflow-x: auto; margin-top: .5rem; }
    table { border-collapse: collapse; font-size: .85rem; }
    th, td { border-bottom: 1px solid #d0d7de; padding: .25rem .5rem; text-align: left; white-space: nowrap; }
    th.added, td.added { background: #f0f7ff; font-weight: 600; }
    ol { list-style: none; padding: 0; margin: .5rem 0; }
    li { display: grid; grid-template-columns: 4rem 1fr 3rem; gap: .5rem; align-items: center; }
    .track { background: #eef1f4; height: .7rem; border-radius: 4px; overflow: hidden; }
    .fill { background: #0b6bcb; height: 100%; }
    .brand { font-size: .75rem; color: #57606a; margin-top: .75rem; }
  `;

  let nextId = 1;

  /** A request/response channel to the engine worker (the protocol of wasm-client/ENGINE.md). */
  class Engine {
    constructor(server) {
      const engineUrl = new URL("/engine/infer-worker.js", server).href;
      const source = `import ${JSON.stringify(engineUrl)};`;
      const blobUrl = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
      this.pending = new Map();
      this.failed = null;
      this.worker = new Worker(blobUrl, { type: "module" });
      this.worker.onmessage = (event) => {
        const msg = event.data || {};
        const waiting = this.pending.get(msg.id);
        if (!waiting || msg.progress) {
          return;
        }
        this.pending.delete(msg.id);
        if (msg.ok) {
          waiting.resolve(msg.result);
        } else {
          waiting.reject(new Error(typeof msg.error === "string" ? msg.error : (msg.error && msg.error.message) || "the engine failed"));
        }
      };
      this.worker.onerror = (event) => {
        event.preventDefault();
        this.fail(event.message || "the B3O engine could not be loaded from " + server);
      };
      setTimeout(() => URL.revokeObjectURL(blobUrl), 60000);
    }

    fail(reason) {
      this.failed = reason;
      for (const waiting of this.pending.values()) {
        waiting.reject(new Error(reason));
      }
      this.pending.clear();
    }

    call(op, args, timeoutMs) {
      if (this.failed) {
        return Promise.reject(new Error(this.failed));
      }
      const id = nextId++;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          this.pending.delete(id);
          reject(new Error("the engine did not answer in time"));
        }, timeoutMs || 120000);
        this.pending.set(id, {
          resolve: (v) => { clearTimeout(timer); resolve(v); },
          reject: (e) => { clearTimeout(timer); reject(e); },
        });
        this.worker.postMessage(Object.assign({ id, op }, args));
      });
    }

    terminate() {
      this.worker.terminate();
      this.fail("stopped");
    }
  }

  /** Splits one CSV line (quotes, the given delimiter) for the preview table. */
  function cells(line, delimiter) {
    const out = [];
    let cur = "";
    let quoted = false;
    for (let i = 0; i < line.length; i++) {
      const c = line[i];
      if (quoted) {
        if (c === '"' && line[i + 1] === '"') { cur += '"'; i++; }
        else if (c === '"') { quoted = false; }
        else { cur += c; }
      } else if (c === '"' && cur.trim() === "") { quoted = true; cur = ""; }
      else if (c === delimiter) { out.push(cur.trim()); cur = ""; }
      else { cur += c; }
    }
    out.push(cur.trim());
    return out;
  }

  function delimiterOf(header) {
    const count = (ch) => header.split(ch).length - 1;
    const comma = count(","), semi = count(";"), tab = count("\t");
    if (semi > comma && semi >= tab) return ";";
    if (tab > comma && tab > semi) return "\t";
    return ",";
  }

  class B3oPredict extends HTMLElement {
    static get observedAttributes() { return ["model", "server"]; }

    constructor() {
      super();
      this.root = this.attachShadow({ mode: "open" });
      this.engine = null;
      this.info = null;
      this.url = null;
    }

    connectedCallback() { this.start(); }

    disconnectedCallback() {
      if (this.engine) { this.engine.terminate(); this.engine = null; }
      if (this.url) { URL.revokeObjectURL(this.url); this.url = null; }
    }

    attributeChangedCallback(_name, before, after) {
      if (this.isConnected && before !== null && before !== after) {
        this.disconnectedCallback();
        this.start();
      }
    }

    get server() {
      return (this.getAttribute("server") || SCRIPT_ORIGIN || location.origin).replace(/\/+$/, "");
    }

    setState(state, message) {
      this.setAttribute("data-state", state);
      const status = this.root.querySelector("[part=status]");
      if (status) {
        status.textContent = message;
        status.setAttribute("role", state === "refused" || state === "error" ? "alert" : "status");
      }
    }

    render() {
      const model = this.getAttribute("model") || "";
      this.root.innerHTML = "";
      const style = document.createElement("style");
      style.textContent = STYLE;
      const title = document.createElement("h2");
      title.textContent = "Predict with " + (model || "a B3O Edge model");
      const status = document.createElement("p");
      status.setAttribute("part", "status");
      status.setAttribute("aria-live", "polite");
      const body = document.createElement("div");
      body.setAttribute("part", "body");
      const result = document.createElement("div");
      result.setAttribute("part", "result");
      result.setAttribute("aria-live", "polite");
      const brand = document.createElement("p");
      brand.className = "brand";
      brand.textContent = "Runs in your browser with B3O Edge: your file is not uploaded.";
      this.root.append(style, title, status, body, result, brand);
    }

    async start() {
      this.render();
      const model = (this.getAttribute("model") || "").trim();
      if (!model) {
        this.setState("error", "This widget needs a model attribute, e.g. <b3o-predict model=\"churn\">.");
        return;
      }
      const server = this.server;
      this.setState("loading", "Loading the model…");
      // Whether this site may use the model, asked of the server before loading the engine.
      const refusal = await this.checkAccess(server, model);
      if (refusal) {
        this.setAttribute("data-reason", refusal.reason);
        this.setState(refusal.state, refusal.message);
        return;
      }
      this.removeAttribute("data-reason");
      try {
        this.engine = new Engine(server);
        this.info = await this.engine.call("load", { server, model }, 180000);
      } catch (e) {
        const text = String((e && e.message) || e);
        const refused = /403|401|not allowed|may not|forbidden|not shared/i.test(text);
        this.setState(refused ? "refused" : "error", refused
          ? `This site (${location.origin}) may not use the model “${model}”: ${text}`
          : `The model could not be loaded: ${text}`);
        return;
      }
      this.showInput();
      this.setState("ready", `Ready: “${model}” runs in your browser.`);
    }

    /**
     * `null` when the package is readable from this page; else what to say: `state`, the
     * `reason` (also set as `data-reason`, for the partner's CSS and for tests) and `message`.
     * The server's refusals are readable from any site (`Access-Control-Allow-Origin: *`), so
     * the reason is the server's: a name that is not deployed and a private model that does
     * not list this site get the same answer (names reveal nothing), a public model that
     * lists other sites only answers `origin_not_allowed`.
     */
    async checkAccess(server, model) {
      const packageUrl = `${server}/api/deployments/${encodeURIComponent(model)}/package`;
      const site = location.origin;
      let response;
      try {
        response = await fetch(packageUrl, { mode: "cors", credentials: "omit" });
      } catch (_) {
        // No readable answer: the server is down, or an older server refused without CORS.
        // The engine files are readable from any site, so if they answer the server is up.
        try {
          await fetch(`${server}/embed.js`, { mode: "cors", credentials: "omit", cache: "no-store" });
        } catch (_) {
          return {
            state: "error",
            reason: "unreachable",
            message: `The model server ${server} cannot be reached. Try again later.`,
          };
        }
        return {
          state: "refused",
          reason: "refused",
          message: `The model server refused this site (${site}) the model “${model}” without saying why. Its owner can check the model's sharing settings.`,
        };
      }
      if (response.ok) return null;
      let code = "";
      let said = "";
      try {
        const body = await response.json();
        code = (body && body.error && body.error.code) || "";
        said = (body && body.error && body.error.message) || "";
      } catch (_) {
        // Not our JSON (a proxy's page): the status is all there is.
      }
      if (response.status === 401 || response.status === 404) {
        return {
          state: "refused",
          reason: "not-available",
          message: `No model “${model}” is available to this site (${site}): either nothing is deployed under that name, or the model is private and its owner has not listed this site among its partner sites.`,
        };
      }
      if (response.status === 403 && code === "origin_not_allowed") {
        return {
          state: "refused",
          reason: "site-not-listed",
          message: `The model “${model}” is public, but its owner lets only the partner sites it lists embed it, and this site (${site}) is not one of them. Its owner can add this site, or let any site embed it.`,
        };
      }
      if (response.status === 403) {
        return {
          state: "refused",
          reason: "refused",
          message: `This site (${site}) may not use the model “${model}”${said ? `: ${said}` : "."}`,
        };
      }
      return {
        state: "error",
        reason: "server-error",
        message: `The model server answered ${response.status}. Try again later.`,
      };
    }

    showInput() {
      const body = this.root.querySelector("[part=body]");
      const image = this.info && this.info.kind === "image";
      const id = "b3o-file";
      const label = document.createElement("label");
      label.htmlFor = id;
      label.textContent = image ? "Choose a picture (PNG or JPEG)" : "Choose a CSV file";
      const input = document.createElement("input");
      input.type = "file";
      input.id = id;
      input.setAttribute("part", "input");
      input.accept = image ? "image/png,image/jpeg" : ".csv,.tsv,.txt,text/csv";
      const hint = document.createElement("p");
      hint.textContent = image
        ? "The picture is reduced to 28x28 greyscale."
        : `With the columns ${((this.info && this.info.input_columns) || []).join(", ")}; other columns are kept, predictions are added at the end.`;
      input.addEventListener("change", () => {
        const file = input.files && input.files[0];
        if (file) this.predict(file, image);
      });
      body.append(label, input, hint);
    }

    async predict(file, image) {
      const model = this.getAttribute("model");
      const result = this.root.querySelector("[part=result]");
      result.textContent = "";
      this.setState("working", "Predicting…");
      try {
        if (image) {
          const bytes = new Uint8Array(await file.arrayBuffer());
          const p = await this.engine.call("predict_image", { model, bytes }, 60000);
          this.showProbabilities(result, p);
          this.setState("done", `Most likely: ${p.label}.`);
        } else {
          const csv = await file.text();
          const p = await this.engine.call("predict_csv", { model, csv }, 300000);
          this.showCsv(result, file.name, p);
          this.setState("done", `${p.rows} row(s) predicted in your browser.`);
        }
      } catch (e) {
        this.setState("error", `${file.name} could not be used: ${String((e && e.message) || e)}`);
      }
    }

    showProbabilities(result, p) {
      const list = document.createElement("ol");
      list.setAttribute("aria-label", "Probability of each class");
      (p.labels || []).forEach((label, i) => {
        const value = Number((p.probabilities || [])[i] || 0);
        const item = document.createElement("li");
        const name = document.createElement("span");
        name.textContent = label;
        const track = document.createElement("span");
        track.className = "track";
        const fill = document.createElement("span");
        fill.className = "fill";
        fill.style.width = Math.round(value * 100) + "%";
        fill.style.display = "block";
        track.append(fill);
        const pct = document.createElement("span");
        pct.textContent = Math.round(value * 100) + "%";
        item.append(name, track, pct);
        list.append(item);
      });
      result.append(list);
    }

    showCsv(result, inputName, p) {
      if (this.url) URL.revokeObjectURL(this.url);
      this.url = URL.createObjectURL(new Blob([p.csv], { type: "text/csv;charset=utf-8" }));
      const link = document.createElement("a");
      link.className = "download";
      link.href = this.url;
      link.download = inputName.replace(/\.csv$/i, "") + "-predictions.csv";
      link.textContent = "Download " + link.download;
      const lines = p.csv.split(/\r\n|\n|\r/).filter((l) => l.trim() !== "");
      const delimiter = delimiterOf(lines[0] || "");
      const header = cells(lines[0] || "", delimiter);
      const added = new Set(p.added_columns || []);
      const table = document.createElement("table");
      const head = table.createTHead().insertRow();
      header.forEach((h) => {
        const th = document.createElement("th");
        th.scope = "col";
        th.textContent = h;
        if (added.has(h)) th.className = "added";
        head.append(th);
      });
      const body = table.createTBody();
      lines.slice(1, 6).forEach((line) => {
        const row = body.insertRow();
        cells(line, delimiter).forEach((c, i) => {
          const td = row.insertCell();
          td.textContent = c;
          if (added.has(header[i])) td.className = "added";
        });
      });
      const wrap = document.createElement("div");
      wrap.className = "table";
      wrap.append(table);
      result.append(link, wrap);
    }
  }

  customElements.define("b3o-predict", B3oPredict);
})();
