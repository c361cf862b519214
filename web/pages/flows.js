// Flows page: the installed flows as cards (models, workers that run them, Run / editor / delete), installing a
// flow from a JSON file (choose or drop) or from the bundled ones, and downloading a flow's missing models with
// their progress. Live: `flows_changed`, `models_changed`, `model_progress` and `worker_updated`. A signed-in user
// who is not an admin sees the cards with Run and the editor only: no workers, installs, deletes or downloads.

import { api, segment } from "../api.js";
import { confirmAction } from "../confirm.js";
import { h, replace, uid } from "../dom.js";
import { dropZone } from "../dropzone.js";
import { debounce } from "../events.js";
import { flowModelsLine, missingModels, showInstalled } from "../models_flow.js";
import { announce, showError, showMessage } from "../notices.js";
import { href } from "../router.js";
import { isAdmin } from "../session.js";

const REFETCH_DELAY_MS = 300;

export function mount(main, { events, signal }) {
  const admin = isAdmin();
  const state = { flows: null, workers: [], bundled: null };
  const progress = new Map();  // model name -> its latest model_progress (the server's downloads)
  const modelLines = new Map();  // flow name -> its card's models line
  const cards = h("div", { class: "card-grid", "aria-busy": "true" }, h("p", { class: "muted" }, "Loading flows…"));
  const bundledList = h("div", { class: "bundled" }, h("p", { class: "muted" }, "Loading bundled flows…"));
  const fileInputId = uid("flow-file");
  const fileInput = h("input", { id: fileInputId, type: "file", accept: ".json,application/json" });
  replace(main,
    h("h1", { tabindex: "-1" }, "Flows"),
    h("p", { class: "lead" }, "Each flow turns your images into new ones. Pick one and press Run."),
    h("section", { "aria-labelledby": "installed-heading" },
      h("h2", { id: "installed-heading" }, "Installed flows"), cards),
    admin && h("section", { class: "panel", "aria-labelledby": "add-heading" },
      h("h2", { id: "add-heading" }, "Add a flow"),
      h("div", { class: "add-grid" },
        h("div", {},
          h("h3", {}, "From a file"),
          h("label", { for: fileInputId }, "Flow file (.json: a Visionatrix flow or a ComfyUI workflow)"),
          dropZone(fileInput, { hint: "Drop a flow file here, or choose one",
            onChange: (file) => file && upload(file) })),
        h("div", {}, h("h3", {}, "Bundled flows"), bundledList))));

  const load = async () => {
    const none = Promise.resolve(null);
    const [flows, workers, bundled] = await Promise.allSettled([api("flows", { signal }),
      admin ? api("workers", { signal }) : none, admin ? api("flows/bundled", { signal }) : none]);
    if (signal.aborted) return;
    if (flows.status === "fulfilled") state.flows = flows.value.flows;
    else showError(flows.reason, "Could not load the flows");
    if (workers.status === "fulfilled") state.workers = workers.value?.workers ?? [];
    else showError(workers.reason, "Could not load the workers");
    if (bundled.status === "fulfilled") state.bundled = bundled.value?.flows ?? null;
    else if (bundled.reason?.status === 404 || bundled.reason?.status === 405) state.bundled = undefined;
    else showError(bundled.reason, "Could not load the bundled flows");
    render();
    loadProgress();
  };

  /** The downloads already running when the page opens (later ones arrive as events). */
  const loadProgress = async () => {
    if (!(state.flows ?? []).some((flow) => missingModels(flow).names.length)) return;
    try {
      const { models } = await api("models", { signal });
      if (signal.aborted) return;
      for (const model of models) {
        if (model.progress && !progress.has(model.name)) progress.set(model.name, model.progress);
      }
      renderModelLines();
    } catch (error) {
      if (!signal.aborted) showError(error, "Could not read the model downloads");
    }
  };

  const loadWorkers = debounce(async () => {
    try {
      state.workers = (await api("workers", { signal })).workers;
      if (!signal.aborted) renderWorkerLines();
    } catch (error) {
      if (!signal.aborted) showError(error, "Could not load the workers");
    }
  }, REFETCH_DELAY_MS);
  const reload = debounce(load, REFETCH_DELAY_MS);

  function render() {
    renderCards();
    renderBundled();
  }

  function renderCards() {
    if (state.flows === null) return;
    cards.removeAttribute("aria-busy");
    if (!state.flows.length) {
      replace(cards, h("p", { class: "empty" }, "No flow is installed. Add one below."));
      return;
    }
    const focused = focusedAction(cards);
    modelLines.clear();
    replace(cards, state.flows.map((flow) => {
      const line = flowModelsLine(flow, { canDownload: admin });
      modelLines.set(flow.name, line);
      return flowCard(flow, admin ? remove : null, line.element);
    }));
    renderWorkerLines();
    renderModelLines();
    if (focused) {
      const card = cards.querySelector(`[data-flow="${CSS.escape(focused.flow)}"]`);
      (card?.querySelector(`[data-action="${focused.action}"]`) ?? main.querySelector("h1")).focus();
    }
  }

  /** The "Workers" line of each card, rewritten in place (worker reports come often; the cards keep the focus). */
  function renderWorkerLines() {
    for (const line of cards.querySelectorAll("[data-workers-of]")) {
      const takers = state.workers.filter((worker) => worker.flows.includes(line.dataset.workersOf));
      line.replaceChildren(workersText(takers));
    }
  }

  function renderModelLines() {
    for (const line of modelLines.values()) line.update(progress);
  }

  function renderBundled() {
    if (state.bundled === undefined) {
      replace(bundledList, h("p", { class: "muted" }, "This server does not offer bundled flows."));
      return;
    }
    if (state.bundled === null) return;
    replace(bundledList, h("ul", { class: "plain-list" }, state.bundled.map((flow) => h("li", { class: "bundled-item" },
      h("div", {}, h("strong", {}, flow.display_name || flow.name), " ", h("code", {}, flow.name),
        h("p", { class: "muted small" }, flow.description || "")),
      flow.installed
        ? h("span", { class: "badge badge-ok" }, "Installed")
        : h("button", { type: "button", onclick: () => installBundled(flow),
          "aria-label": `Install ${flow.display_name || flow.name}` }, "Install")))));
  }

  async function upload(file) {
    const body = new FormData();
    body.append("file", file);
    try {
      const flow = await api("flows", { method: "POST", body });
      fileInput.value = "";
      fileInput.dispatchEvent(new Event("change"));
      showInstalled(flow);
      announce(`Installed ${flow.name}`);
      await load();
    } catch (error) {
      showError(error, `Could not install ${file.name}`);
    }
  }

  async function installBundled(flow) {
    try {
      showInstalled(await api(`flows/bundled/${segment(flow.name)}`, { method: "POST" }));
      await load();
    } catch (error) {
      showError(error, `Could not install ${flow.name}`);
    }
  }

  async function remove(flow) {
    const title = flow.display_name || flow.name;
    const question = flow.bundled
      ? `Uninstall “${title}”? It stays in the bundled list and can be installed again.`
      : `Delete the uploaded flow “${title}”? This cannot be undone.`;
    if (!await confirmAction(question, flow.bundled ? "Uninstall" : "Delete")) return;
    try {
      await api(`flows/${segment(flow.name)}`, { method: "DELETE" });
      showMessage(`${flow.bundled ? "Uninstalled" : "Deleted"} the flow “${title}”.`, "success");
      document.querySelector("main h1")?.focus();
      await load();
    } catch (error) {
      showError(error, `Could not delete ${flow.name}`);
    }
  }

  const unsubscribe = events.subscribe((event) => {
    if (event.type === "flows_changed" || event.type === "models_changed") reload();
    else if (event.type === "worker_updated" && admin) loadWorkers();
    else if (event.type === "model_progress" && !event.worker_id) {
      progress.set(event.name, event);
      renderModelLines();
    }
  });
  const unsubscribeResync = events.onResync(reload);
  load();
  return () => {
    unsubscribe();
    unsubscribeResync();
    reload.cancel();
    loadWorkers.cancel();
  };
}

/** The flow card and action that have the keyboard focus, to find them again after a redraw. */
function focusedAction(cards) {
  const active = document.activeElement;
  const card = cards.contains(active) ? active.closest("[data-flow]") : null;
  return card && active.dataset.action ? { flow: card.dataset.flow, action: active.dataset.action } : null;
}

function workersText(workers) {
  if (!workers.length) return h("span", { class: "warn" }, "No worker takes it yet");
  return workers.map((worker) => `${worker.worker_id}${worker.state === "offline" ? " (offline)" : ""}`)
    .join(", ");
}

/** A flow's card; `remove` is null for a user who may not delete flows (no Workers line, no Delete button). */
function flowCard(flow, remove, modelsLine) {
  const title = flow.display_name || flow.name;
  const missingNodes = flow.missing_node_types;
  const headingId = uid("flow");
  const facts = [["Models", modelsLine]];
  if (missingNodes.length) facts.push(["Node types", h("span", { class: "warn" }, `Missing: ${missingNodes.join(", ")}`)]);
  return h("article", { class: "card", "aria-labelledby": headingId, "data-flow": flow.name },
    h("h3", { id: headingId }, title),
    h("p", { class: "muted small" }, h("code", {}, flow.name), flow.version ? ` · v${flow.version}` : "",
      flow.bundled ? " · bundled" : " · uploaded"),
    flow.description ? h("p", { class: "card-text" }, flow.description) : null,
    (flow.tags ?? []).length ? h("ul", { class: "tags", "aria-label": "Tags" },
      flow.tags.map((tag) => h("li", {}, tag))) : null,
    h("dl", { class: "facts" }, facts.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]),
      remove && [h("dt", {}, "Workers"), h("dd", { "data-workers-of": flow.name })]),
    h("div", { class: "card-actions" },
      h("a", { class: "button primary", href: href("run", flow.name), "aria-label": `Run ${title}`, "data-action": "run" },
        "Run"),
      h("a", { class: "button", href: `comfy/?vix_flow=${encodeURIComponent(flow.name)}`, "data-action": "editor",
        "aria-label": `Open ${title} in the graph editor` }, "Open in editor"),
      h("a", { class: "button", href: `vapi/flows/${segment(flow.name)}`, "data-action": "details",
        "aria-label": `Flow details of ${title} (JSON)` }, "Details (JSON)"),
      remove && h("button", { type: "button", class: "danger", onclick: () => remove(flow), "data-action": "remove",
        "aria-label": `${flow.bundled ? "Uninstall" : "Delete"} ${title}` }, flow.bundled ? "Uninstall" : "Delete")));
}
