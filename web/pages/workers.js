// Workers page: every worker that reported in (state, mode, device, memory, models, flows, current task, last seen),
// an editor of the flows each one takes and "Free memory" (unload its models). Live: `worker_updated` refetches the
// list (debounced); rows update in place, so an open editor keeps what the user ticked.

import { api, segment } from "../api.js";
import { h, replace, uid } from "../dom.js";
import { debounce } from "../events.js";
import { formatBytes, formatRelative, formatTime } from "../format.js";
import { describeProgress, isActive } from "../models_progress.js";
import { announce, showError, showMessage } from "../notices.js";
import { href } from "../router.js";

const REFETCH_DELAY_MS = 300;
const CLOCK_MS = 15_000;

export function mount(main, { events, signal }) {
  const rows = new Map();  // worker_id -> {row, update(worker)}
  const body = h("tbody", {});
  const table = h("table", { class: "workers responsive-table", hidden: true },
    h("caption", { class: "visually-hidden" }, "Workers"),
    h("thead", {}, h("tr", {}, ["Worker", "State", "Mode", "Device", "Memory", "Models", "Current task",
      "Last seen", "Flows"]
      .map((name) => h("th", { scope: "col" }, name)))),
    body);
  const empty = h("div", { class: "empty", hidden: true },
    h("p", {}, "No worker has reported in yet."),
    h("p", { class: "small muted" }, "Start one on a machine that can reach this server: ",
      h("code", {}, `VIX_MODE=WORKER VIX_HOST=${location.origin} python -m visionatrix run`),
      ". It appears here on its own."));
  replace(main,
    h("h1", { tabindex: "-1" }, "Workers"),
    h("p", { class: "lead" }, "The machines that run tasks. Each takes the flows it has installed, or only the ones you choose."),
    h("div", { class: "table-wrap" }, table),
    empty);

  const load = async () => {
    try {
      const { workers } = await api("workers", { signal });
      if (!signal.aborted) render(workers);
    } catch (error) {
      if (!signal.aborted) showError(error, "Could not load the workers");
    }
  };
  const reload = debounce(load, REFETCH_DELAY_MS);

  function render(workers) {
    const seen = new Set();
    for (const worker of workers) {
      seen.add(worker.worker_id);
      let entry = rows.get(worker.worker_id);
      if (!entry) {
        entry = workerRow(worker, (updated) => rows.get(updated.worker_id)?.update(updated));
        rows.set(worker.worker_id, entry);
      }
      body.append(entry.row);  // keeps the server's order; moving a row keeps its state
      entry.update(worker);
    }
    for (const [id, entry] of rows) {
      if (!seen.has(id)) {
        entry.row.remove();
        rows.delete(id);
      }
    }
    table.hidden = rows.size === 0;
    empty.hidden = rows.size > 0;
  }

  const clock = setInterval(() => {
    for (const entry of rows.values()) entry.tick();
  }, CLOCK_MS);
  const unsubscribe = events.subscribe((event) => {
    if (event.type === "worker_updated" || event.type === "flows_changed") reload();
  });
  const unsubscribeResync = events.onResync(reload);
  load();
  return () => {
    clearInterval(clock);
    unsubscribe();
    unsubscribeResync();
    reload.cancel();
  };
}

/** "Device: 3.2 GB free of 8 GB" and "RAM: ..." lines; one line when the device is the CPU (the same memory). */
function memoryLines(resources) {
  if (!resources) return "—";
  const pair = (free, total) => (total ? `${formatBytes(free)} free of ${formatBytes(total)}` : null);
  const device = pair(resources.device_memory_free, resources.device_memory_total);
  const ram = pair(resources.ram_free, resources.ram_total);
  const lines = [device && device !== ram ? `Device: ${device}` : null, ram ? `RAM: ${ram}` : null].filter(Boolean);
  return lines.length ? lines.map((line) => h("div", {}, line)) : "—";
}

/** The worker's models as it reported them: installed, loaded (RAM / VRAM), downloads under way. */
function modelLines(models) {
  if (!models) return [h("div", {}, "—")];
  const loaded = models.loaded ?? [];
  const installing = Object.entries(models.installing ?? {}).filter(([, progress]) => isActive(progress)
    || progress.state === "failed");
  return [
    h("div", {}, `${(models.present ?? []).length} installed`, h("span", { class: "visually-hidden" }, " models")),
    loaded.length ? h("div", { class: "small" }, `Loaded: ${loaded.map((item) => item.name).join(", ")}`) : null,
    models.ram_bytes || models.vram_bytes ? h("div", { class: "small muted" },
      `RAM ${formatBytes(models.ram_bytes ?? 0)} · VRAM ${formatBytes(models.vram_bytes ?? 0)}`) : null,
    installing.map(([name, progress]) => (progress.state === "failed"
      ? h("div", { class: "small model-error" }, `${name}: failed: ${progress.error ?? ""}`)
      : h("div", { class: "small" }, `${name}: ${describeProgress(progress)}`))),
  ];
}

/** "Free memory": asks the worker to unload its models (it does so with its next report). */
function freeButton(getWorker) {
  const button = h("button", { type: "button", "data-action": "free" }, "Free memory");
  button.addEventListener("click", async () => {
    const id = getWorker().worker_id;
    button.disabled = true;
    try {
      await api(`workers/${segment(id)}/free`, { method: "POST" });
      const text = `Asked ${id} to free its memory; it unloads its models with its next report.`;
      showMessage(text, "success");
      announce(text);
    } catch (error) {
      showError(error, `Could not ask ${id} to free its memory`);
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

/** A row whose cells `update(worker)` rewrites; its flows editor is rebuilt only while closed. */
function workerRow(initial, onSaved) {
  let worker = initial;
  const cell = (label) => h("td", { "data-label": label });
  const name = h("th", { scope: "row", "data-label": "Worker" });
  const state = cell("State");
  const mode = cell("Mode");
  const device = cell("Device");
  const memory = cell("Memory");
  const models = cell("Models");
  const modelsText = h("div", {});
  const free = freeButton(() => worker);
  models.append(modelsText, free);
  const current = cell("Current task");
  const seen = cell("Last seen");
  const flows = cell("Flows");
  const row = h("tr", { "data-worker-id": initial.worker_id }, name, state, mode, device, memory, models, current, seen,
    flows);
  const installed = h("p", { class: "small muted installed-flows" });
  const editor = flowsEditor(() => worker, onSaved);
  flows.append(installed, editor.element);

  const tick = () => {
    replace(seen, h("time", { datetime: worker.last_seen_at ?? "", title: formatTime(worker.last_seen_at) },
      formatRelative(worker.last_seen_at)));
  };
  const update = (fresh) => {
    worker = fresh;
    row.dataset.state = worker.state;
    replace(name, worker.worker_id);
    replace(state, h("span", { class: `badge state-${worker.state}` }, worker.state));
    replace(mode, worker.mode ?? "—");
    replace(device, [...new Set([worker.device, worker.resources?.device_name].filter(Boolean))].join(" · ") || "—");
    replace(memory, memoryLines(worker.resources));
    replace(modelsText, modelLines(worker.models));
    free.setAttribute("aria-label", `Free the memory of ${worker.worker_id}`);
    free.hidden = !worker.models || worker.state === "offline";
    const taskId = String(worker.current_task_id ?? "");
    if (current.dataset.taskId !== taskId) {  // redrawn only on a change: the link may have the focus
      current.dataset.taskId = taskId;
      replace(current, taskId ? h("a", { href: href("queue", taskId) }, `#${taskId}`) : "—");
    }
    tick();
    const names = worker.installed_flows ?? [];
    installed.textContent = names.length ? `Installed: ${names.join(", ")}` : "No flow installed";
    editor.update();
  };
  return { row, update, tick };
}

/** "Flows it takes": a disclosure with a checkbox per installed flow and "take every installed flow". */
function flowsEditor(getWorker, onSaved) {
  const summary = h("summary", {});
  const form = h("form", { class: "flows-editor" });
  const details = h("details", { class: "flows-details" }, summary, form);
  let shown = null;  // the record the form was built from

  const describe = (worker) => {
    const installed = worker.installed_flows;
    const taken = worker.flows;
    return worker.allowed_flows === null
      ? `Takes every installed flow (${installed.length})` : `Takes ${taken.length} of ${installed.length} flows`;
  };

  const build = (worker) => {
    shown = worker;
    const installed = worker.installed_flows ?? [];
    const allowed = worker.allowed_flows;
    const everyId = uid("every");
    const every = h("input", { type: "checkbox", id: everyId, checked: allowed === null || allowed === undefined });
    const boxes = installed.map((flow) => {
      const id = uid("allow");
      return { flow, box: h("input", { type: "checkbox", id, value: flow,
        checked: allowed === null || allowed === undefined || allowed.includes(flow) }), id };
    });
    const sync = () => { for (const { box } of boxes) box.disabled = every.checked; };
    every.addEventListener("change", sync);
    sync();
    const save = h("button", { type: "submit", class: "primary" }, "Save");
    replace(form,
      h("fieldset", {},
        h("legend", {}, `Flows ${worker.worker_id} takes`),
        h("div", { class: "check" }, every, h("label", { for: everyId }, "Take every installed flow")),
        installed.length ? h("ul", { class: "plain-list checks" }, boxes.map(({ flow, box, id }) =>
          h("li", { class: "check" }, box, h("label", { for: id }, flow))))
          : h("p", { class: "small muted" }, "No flow is installed on this worker.")),
      h("div", { class: "button-row" }, save));
    form.onsubmit = async (event) => {
      event.preventDefault();
      const flows = every.checked ? null : boxes.filter(({ box }) => box.checked).map(({ flow }) => flow);
      save.disabled = true;
      try {
        const updated = await api(`workers/${segment(worker.worker_id)}/allowed_flows`, { method: "PUT",
          json: { flows } });
        details.open = false;
        shown = null;
        onSaved(updated);
        summary.focus();
        const text = flows === null ? `${worker.worker_id} takes every installed flow.`
          : `${worker.worker_id} takes ${flows.length ? flows.join(", ") : "no flow"}.`;
        showMessage(text, "success");
        announce(text);
      } catch (error) {
        showError(error, `Could not change the flows of ${worker.worker_id}`);
      } finally {
        save.disabled = false;
      }
    };
  };

  const update = () => {
    const worker = getWorker();
    summary.textContent = describe(worker);
    const changed = !shown || JSON.stringify([shown.installed_flows, shown.allowed_flows])
      !== JSON.stringify([worker.installed_flows, worker.allowed_flows]);
    if (changed && !details.open) build(worker);
  };
  return { element: details, update };
}
