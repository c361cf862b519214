// Models page: the catalog's models with their state in the server's models folder (size, the flows that need
// each, a gated hint), install / cancel / remove, and live download progress. `#/models/<flow>` shows only the
// models of one flow. Live: `model_progress` moves a row's bar in place; an ended download, `models_changed` and
// `flows_changed` read the list again; so does a reconnect. No polling. A user who is not an admin sees the list
// without its actions.

import { api, segment } from "../api.js";
import { confirmAction } from "../confirm.js";
import { h, replace, uid } from "../dom.js";
import { debounce } from "../events.js";
import { formatBytes } from "../format.js";
import { isActive } from "../models_progress.js";
import { modelRow, shownState } from "../models_row.js";
import { announce, showError, showMessage } from "../notices.js";
import { href } from "../router.js";
import { isAdmin } from "../session.js";

const REFETCH_DELAY_MS = 200;
const STATES = [["", "All"], ["installed", "Installed"], ["missing", "Missing"], ["partial", "Partly downloaded"],
  ["corrupt", "Corrupt"], ["active", "Downloading now"]];

export function mount(main, { arg: flow, events, signal }) {
  const admin = isAdmin();
  const rows = new Map();  // name -> {row, update, applyProgress, model}
  let loaded = false;
  const searchId = uid("model-search");
  const stateId = uid("model-state");
  const neededId = uid("model-needed");
  const search = h("input", { id: searchId, type: "search", placeholder: "Name, file, folder or flow" });
  const stateFilter = h("select", { id: stateId }, STATES.map(([value, text]) => h("option", { value }, text)));
  const needed = h("input", { id: neededId, type: "checkbox" });
  const count = h("p", { class: "small muted", role: "status" });
  const body = h("tbody", {});
  const table = h("table", { class: "models responsive-table", hidden: true },
    h("caption", { class: "visually-hidden" }, flow ? `Models of the flow ${flow}` : "Models"),
    h("thead", {}, h("tr", {}, ["Model", "Folder", "Size", "State", "Needed by", admin ? "Actions" : null]
      .filter(Boolean).map((name) => h("th", { scope: "col" }, name)))),
    body);
  const empty = h("p", { class: "empty", hidden: true });
  replace(main,
    h("h1", { tabindex: "-1" }, flow ? `Models of ${flow}` : "Models"),
    h("p", { class: "lead" }, "The model files flows load.", admin ? [" Install downloads one into the server's ",
      "models folder (checked against the catalog's checksum); a stopped download resumes where it ended."] : ""),
    flow ? h("p", { class: "breadcrumbs" }, "Only the models the flow ", h("code", {}, flow), " needs. ",
      h("a", { href: href("models") }, "Show every model")) : null,
    h("div", { class: "toolbar" },
      h("span", { class: "toolbar-field" }, h("label", { for: searchId }, "Search"), search),
      h("span", { class: "toolbar-field" }, h("label", { for: stateId }, "State"), stateFilter),
      h("span", { class: "check" }, needed, h("label", { for: neededId }, "Only models installed flows need"))),
    count,
    h("div", { class: "table-wrap" }, table),
    empty);

  const matches = (model) => {
    const words = search.value.trim().toLowerCase();
    const haystack = [model.name, model.filename, model.folder, ...(model.flows ?? [])].join(" ").toLowerCase();
    const state = stateFilter.value;
    return (!words || words.split(/\s+/).every((word) => haystack.includes(word)))
      && (!state || (state === "active" ? isActive(model.progress) : shownState(model) === state))
      && (!needed.checked || (model.flows ?? []).length > 0);
  };

  function applyFilters() {
    let shown = 0;
    for (const entry of rows.values()) {
      entry.row.hidden = !matches(entry.model);
      if (!entry.row.hidden) shown += 1;
    }
    if (!loaded) return;
    table.hidden = shown === 0;
    empty.hidden = shown > 0;
    empty.textContent = rows.size ? "No model matches the filters." : flow
      ? "This flow needs no model from the catalog." : "The models catalog is empty.";
    const installed = [...rows.values()].filter((entry) => entry.model.state === "installed");
    const bytes = installed.reduce((sum, entry) => sum + (entry.model.bytes_on_disk ?? 0), 0);
    count.textContent = `${shown === rows.size ? `${rows.size} models` : `${shown} of ${rows.size} models`}; `
      + `${installed.length} installed (${formatBytes(bytes)}).`;
  }

  function render(models) {
    const seen = new Set();
    for (const model of models) {
      seen.add(model.name);
      let entry = rows.get(model.name);
      if (entry) entry.update(model);
      else rows.set(model.name, entry = modelRow(model, admin ? act : null));
      body.append(entry.row);  // the server's order; moving a row keeps its focus
    }
    for (const [name, entry] of rows) {
      if (seen.has(name)) continue;
      if (entry.row.contains(document.activeElement)) main.querySelector("h1").focus();
      entry.row.remove();
      rows.delete(name);
    }
    loaded = true;
    applyFilters();
  }

  const load = async () => {
    try {
      const { models } = await api(flow ? `models?flow=${segment(flow)}` : "models", { signal });
      if (!signal.aborted) render(models);
    } catch (error) {
      if (signal.aborted) return;
      if (error.status === 404 && !flow) {  // no catalog configured
        replace(empty, "This server has no models catalog (", h("code", {}, "VIX_MODELS_CATALOG"), ").");
        empty.hidden = false;
      } else {
        showError(error, flow ? `Could not load the models of ${flow}` : "Could not load the models");
      }
    }
  };
  const reload = debounce(load, REFETCH_DELAY_MS);

  async function act(action, name) {
    const model = rows.get(name)?.model;
    try {
      if (action === "install") {
        const { started } = await api("models/install", { method: "POST", json: { names: [name] } });
        announce(started.length ? `Downloading ${name}` : `${name} is already installed`);
      } else if (action === "cancel") {
        const { cancelled } = await api(`models/${segment(name)}/cancel`, { method: "POST" });
        announce(cancelled ? `Cancelled the download of ${name}` : `${name} was not downloading`);
      } else if (action === "remove") {
        const size = model?.bytes_on_disk ? ` (${formatBytes(model.bytes_on_disk)})` : "";
        const users = model?.flows?.length ? ` ${model.flows.join(", ")} cannot run until it is installed again.` : "";
        if (!await confirmAction(`Remove the model “${name}”${size} from the server's models folder?${users}`,
          "Remove")) return;
        await api(`models/${segment(name)}`, { method: "DELETE" });
        showMessage(`Removed the model “${name}”.`, "success");
      }
    } catch (error) {
      showError(error, `Could not ${action} ${name}`);
    }
    reload();
  }

  const onEvent = (event) => {
    if (event.type === "model_progress") {
      if (event.worker_id) return;  // a worker's own download: the Workers page shows it
      const entry = rows.get(event.name);
      if (!entry) return;
      entry.applyProgress(event);
      if (!isActive(event)) {
        reload();  // the file's state and size changed
        if (event.state === "installed") announce(`${event.name} is installed`);
        if (event.state === "failed") announce(`The download of ${event.name} failed`);
      }
      if (stateFilter.value) applyFilters();
    } else if (event.type === "models_changed" || event.type === "flows_changed") {
      reload();
    }
  };

  for (const control of [search, stateFilter, needed]) {
    control.addEventListener(control === search ? "input" : "change", applyFilters);
  }
  const unsubscribe = events.subscribe(onEvent);
  const unsubscribeResync = events.onResync(reload);
  load();
  return () => {
    unsubscribe();
    unsubscribeResync();
    reload.cancel();
  };
}
