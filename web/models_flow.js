// A flow's missing models on its Flows card: which ones the catalog can download, "Download N missing models"
// (POST /vapi/models/install), the downloads' combined progress bar and their errors; and the offer to download
// them right after a flow is installed.

import { api } from "./api.js";
import { h } from "./dom.js";
import { formatBytes } from "./format.js";
import { isActive, progressBar, setProgress } from "./models_progress.js";
import { announce, showError, showMessage } from "./notices.js";
import { href } from "./router.js";

/**
 * The flow's missing model files split in two: `names` (catalog models that can be downloaded, each once) with
 * `sizes` (name -> bytes, when the catalog gives them) and `unknown` (files the catalog does not name).
 */
export function missingModels(flow) {
  const missing = new Set(flow.models_missing ?? []);
  const names = [];
  const unknown = [];
  const sizes = new Map();
  for (const ref of flow.models ?? []) {
    const file = String(ref.value || ref.name);
    if (!missing.has(file)) continue;
    if (ref.in_catalog && !names.includes(ref.name)) {
      names.push(ref.name);
      if (ref.file_size) sizes.set(ref.name, ref.file_size);
    } else if (!ref.in_catalog && !unknown.includes(file)) {
      unknown.push(file);
    }
  }
  return { names, unknown, sizes };
}

function plural(count, word) {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}

/**
 * Starts the downloads of the flow's missing catalog models: `{"flow"}` when the catalog names all of them, else
 * `{"names"}` of those it names (the others cannot be downloaded). Errors are shown; returns the started names.
 */
export async function downloadFlowModels(flow) {
  const { names, unknown } = missingModels(flow);
  const title = flow.display_name || flow.name;
  try {
    const json = unknown.length ? { names } : { flow: flow.name };
    const { started } = await api("models/install", { method: "POST", json });
    announce(started.length ? `Downloading ${plural(started.length, "model")} for ${title}`
      : `The models of ${title} are installed`);
    return started;
  } catch (error) {
    showError(error, `Could not download the models of ${title}`);
    return [];
  }
}

/** After installing `flow`: a confirmation that also offers to download its missing models. */
export function showInstalled(flow) {
  const title = flow.display_name || flow.name;
  const { names } = missingModels(flow);
  if (!names.length) {
    showMessage(`Installed the flow “${title}”.`, "success");
    return;
  }
  const button = h("button", { type: "button", class: "primary", "data-action": "download-models" },
    `Download ${plural(names.length, "missing model")}`);
  const message = showMessage([`Installed the flow “${title}”. It needs ${plural(names.length, "model")} `,
    "that this server does not have yet. ", button], "success");
  button.addEventListener("click", async () => {
    button.disabled = true;
    await downloadFlowModels(flow);
    message.remove();
    const card = document.querySelector(`[data-flow="${CSS.escape(flow.name)}"]`);
    (card?.querySelector('[data-action="download-models"]') ?? document.querySelector("main h1"))?.focus();
  });
}

/**
 * The "Models" line of a flow card: present / missing, the download button (only with `canDownload`: an admin),
 * and `update(progress)` (a Map of model name -> latest `model_progress`) for the combined bar and the errors.
 */
export function flowModelsLine(flow, { canDownload = true } = {}) {
  const { names, unknown, sizes } = missingModels(flow);
  const missing = flow.models_missing ?? [];
  const title = flow.display_name || flow.name;
  if (!missing.length) {
    const text = (flow.models ?? []).length ? "All present" : "None needed";
    return { element: h("span", { class: "ok" }, text), update: () => {} };
  }
  const meter = progressBar(`Download of the models of ${title}`);
  meter.hidden = true;
  const note = h("p", { class: "model-note small model-error", hidden: true });
  const button = canDownload && names.length ? h("button", { type: "button", class: "primary",
    "data-action": "download-models", "aria-label": `Download the ${plural(names.length, "missing model")} of ${title}` },
  `Download ${plural(names.length, "missing model")}`) : null;
  let running = false;
  button?.addEventListener("click", () => {
    if (!running) downloadFlowModels(flow);
  });
  const element = h("div", { class: "flow-models" },
    h("span", { class: "warn" }, `Missing: ${missing.join(", ")}`),
    unknown.length ? h("p", { class: "small muted" }, `Not in the models catalog: ${unknown.join(", ")}`) : null,
    button ? h("div", { class: "button-row compact" }, button,
      h("a", { href: href("models", flow.name), class: "small" }, "See them on the Models page")) : null,
    meter, note);

  const update = (progress) => {
    const known = names.map((name) => [name, progress.get(name)]).filter(([, item]) => item);
    const active = known.filter(([, item]) => isActive(item));
    running = active.length > 0;
    if (button) {
      button.setAttribute("aria-disabled", String(running));
      button.textContent = running ? "Downloading…" : `Download ${plural(names.length, "missing model")}`;
    }
    meter.hidden = !running;
    if (running) {
      let done = 0;
      let total = 0;
      for (const name of names) {
        const item = progress.get(name);
        const size = item?.bytes_total ?? sizes.get(name) ?? 0;
        total += size;
        done += item?.state === "installed" ? size : item?.bytes_done ?? 0;
      }
      setProgress(meter, done, total, `Downloading ${active.length} of ${plural(names.length, "model")}: `
        + `${formatBytes(done)} of ${formatBytes(total)}`);
    }
    const failed = known.filter(([, item]) => item.state === "failed");
    note.textContent = failed.map(([name, item]) => `${name}: ${item.error ?? "failed"}`).join("; ");
    note.hidden = !failed.length;
  };
  return { element, update };
}
