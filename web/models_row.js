// One catalog model as a table row of the Models page: name (homepage link, file, gated hint), folder, size, state
// with its download's progress bar and error, the flows that need it, and its actions. `update(model)` rewrites
// the row in place and `applyProgress(event)` moves its bar, so a focused button keeps the focus.

import { h, replace } from "./dom.js";
import { formatBytes } from "./format.js";
import { describeProgress, isActive, progressBar, setProgress } from "./models_progress.js";
import { href } from "./router.js";

const TOKEN_HOSTS = [["huggingface.co", "HF_TOKEN"], ["civitai.com", "CIVITAI_TOKEN"]];

/** The setting a gated model's host needs ("HF_TOKEN"), or null when the host is not one we know. */
export function tokenFor(url) {
  let host;
  try {
    host = new URL(url).hostname;
  } catch {
    return null;
  }
  const found = TOKEN_HOSTS.find(([name]) => host === name || host.endsWith(`.${name}`));
  return found ? found[1] : null;
}

/** The state a row shows: the download's while it runs, else the file's. */
export function shownState(model) {
  return isActive(model.progress) ? model.progress.state : model.state;
}

function nameCell(cell, model) {
  const token = model.gated ? tokenFor(model.url) : null;
  replace(cell,
    model.homepage ? h("a", { href: model.homepage, target: "_blank", rel: "noopener noreferrer",
      title: "The model's homepage" }, model.name) : h("span", { class: "model-name" }, model.name),
    h("div", { class: "small muted" }, h("code", {}, model.filename)),
    model.gated ? h("div", { class: "small warn gated" },
      token ? `Gated: needs ${token}` : "Gated: needs an access token") : null);
}

function flowsCell(cell, model) {
  const flows = model.flows ?? [];
  replace(cell, flows.length
    ? h("ul", { class: "plain-list" }, flows.map((flow) => h("li", {}, h("a", { href: href("run", flow) }, flow))))
    : h("span", { class: "muted" }, "No installed flow"));
}

/** The actions that fit the model now: install (or resume), cancel, remove. */
function actionsFor(model) {
  const active = isActive(model.progress);
  const actions = [];
  if (active) actions.push(["cancel", "Cancel"]);
  else if (model.state !== "installed" && model.url) {
    actions.push(["install", model.state === "partial" ? "Resume" : "Install"]);
  }
  if (!active && (model.state !== "missing" || model.bytes_on_disk > 0)) actions.push(["remove", "Remove"]);
  return actions;
}

function actionsCell(cell, model, act) {
  const actions = actionsFor(model);
  const key = actions.map(([action]) => action).join(",");
  if (cell.dataset.actions === key) return;  // unchanged: the buttons (and the focus) stay
  const focused = cell.contains(document.activeElement) ? document.activeElement.dataset.action : null;
  cell.dataset.actions = key;
  const buttons = actions.map(([action, text]) => h("button", { type: "button", "data-action": action,
    class: action === "install" ? "primary" : action === "remove" ? "danger" : null,
    "aria-label": `${text} ${model.name}`, onclick: () => act(action, model.name) }, text));
  replace(cell, h("div", { class: "button-row compact" }, buttons,
    !actions.length && !model.url ? h("span", { class: "small muted" }, "No download address") : null));
  if (focused) (cell.querySelector(`[data-action="${focused}"]`) ?? cell.querySelector("button"))?.focus();
}

/** A row for `model`; `act(action, name)` runs its buttons ("install", "cancel", "remove"); null: no actions. */
export function modelRow(initial, act) {
  let model = initial;
  const cell = (label) => h("td", { "data-label": label });
  const name = h("th", { scope: "row", "data-label": "Model" });
  const folder = cell("Folder");
  const size = cell("Size");
  const state = cell("State");
  const flows = cell("Needed by");
  const actions = cell("Actions");
  const badge = h("span", { class: "badge" });
  const meter = progressBar(`Download of ${initial.name}`);
  const note = h("p", { class: "model-note small" });
  state.append(badge, meter, note);
  const row = h("tr", { "data-model": initial.name }, name, folder, size, state, flows, act && actions);

  const showProgress = () => {
    const progress = model.progress;
    const stateName = shownState(model);
    row.dataset.state = stateName;
    badge.className = `badge model-${stateName}`;
    badge.textContent = stateName;
    meter.hidden = !isActive(progress);
    if (isActive(progress)) {
      setProgress(meter, progress.bytes_done, progress.bytes_total ?? model.file_size, describeProgress(progress));
    }
    const failed = progress?.state === "failed";
    note.className = `model-note small${failed || model.problem ? " model-error" : ""}`;
    const partial = model.state === "partial" && !isActive(progress)
      ? `${formatBytes(model.bytes_on_disk)} downloaded; Resume continues it` : "";
    note.textContent = failed ? `Download failed: ${progress.error ?? "unknown error"}`
      : [progress?.state === "cancelled" ? "Download cancelled" : "", model.problem ?? "", partial]
        .filter(Boolean).join(". ");
    note.hidden = !note.textContent;
    if (act) actionsCell(actions, model, act);
  };

  const update = (fresh) => {
    model = fresh;
    nameCell(name, model);
    folder.textContent = model.folder || "(models folder)";
    size.textContent = formatBytes(model.file_size ?? (model.state === "installed" ? model.bytes_on_disk : null));
    flowsCell(flows, model);
    showProgress();
  };

  /** A `model_progress` event for this model, applied in place. */
  const applyProgress = (event) => {
    model = { ...model, progress: event };
    showProgress();
  };
  update(initial);
  return { row, update, applyProgress, get model() { return model; } };
}
