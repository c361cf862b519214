// One task as a table row: id, flow, status (with the failing node), progress, worker (and the run's peak VRAM),
// times and its actions.
// Cells carry data-label so the narrow layout can show each as "label: value".

import { pageUrl } from "./api.js";
import { h } from "./dom.js";
import { formatBytes, formatDuration, formatTime } from "./format.js";
import { href } from "./router.js";

const STATUS_TEXT = { pending: "pending", claimed: "claimed", running: "running", finished: "finished",
  failed: "failed", cancelled: "cancelled" };
/** Statuses a worker holds the task in (it cannot be deleted; it may be cancelled). */
const HELD = ["claimed", "running"];

function progressCell(task) {
  const percent = Math.round(task.progress ?? 0);
  const node = task.status === "running" && task.current_node ? `Running node ${task.current_node}` : "";
  return h("td", { "data-label": "Progress", class: "progress-cell" },
    h("div", { class: "progress-line" },
      h("progress", { max: 100, value: percent, "aria-label": `Progress of task ${task.id}` }),
      h("span", { class: "progress-text" }, `${percent} %`)),
    h("span", { class: "current-node small muted" }, node));
}

function statusCell(task) {
  const error = task.error;
  const cancelling = task.cancel_requested && task.status === "running";
  return h("td", { "data-label": "Status" },
    h("span", { class: `badge status-${task.status}` }, cancelling ? "cancelling" : STATUS_TEXT[task.status] ?? task.status),
    task.status === "claimed" && task.worker_id
      ? h("p", { class: "small muted claimed-note" }, `Waiting on worker ${task.worker_id}`) : null,
    error ? h("p", { class: "task-error" },
      `Failed at node ${error.node_id ?? "?"}${error.class_type ? ` (${error.class_type})` : ""}: ${error.message ?? ""}`)
      : null);
}

function timesCell(task) {
  const duration = formatDuration(task.started_at, task.finished_at);
  return h("td", { "data-label": "Times", class: "small" },
    h("div", {}, "Queued ", h("time", { datetime: task.created_at }, formatTime(task.created_at))),
    task.started_at ? h("div", {}, "Started ", h("time", { datetime: task.started_at }, formatTime(task.started_at))) : null,
    task.finished_at ? h("div", {}, "Ended ", h("time", { datetime: task.finished_at }, formatTime(task.finished_at)),
      duration ? ` (${duration})` : "") : null);
}

function actionsCell(task, act) {
  const button = (action, text, extra = {}) => h("button", { type: "button", "data-action": action,
    "aria-label": `${text} task ${task.id}`, onclick: () => act(action, task), ...extra }, text);
  const outputs = task.outputs ?? [];
  return h("td", { "data-label": "Actions" }, h("div", { class: "button-row compact" },
    outputs.length ? button("results", "Results", { "aria-label": `Results of task ${task.id}`, class: "primary" })
      : null,
    task.previews?.length ? button("previews", "Previews", { "aria-label": `Previews of task ${task.id}` }) : null,
    ["pending", ...HELD].includes(task.status) && !task.cancel_requested ? button("cancel", "Cancel") : null,
    ["failed", "cancelled"].includes(task.status) ? button("restart", "Restart") : null,
    !HELD.includes(task.status) ? button("delete", "Delete", { class: "danger" }) : null));
}

/** A <tr> for `task`; `act(action, task)` runs its buttons ("results", "previews", "cancel", "restart", "delete"). */
export function taskRow(task, act) {
  return h("tr", { id: `task-${task.id}`, "data-task-id": task.id, "data-status": task.status },
    h("th", { scope: "row", "data-label": "Task" }, `#${task.id}`),
    h("td", { "data-label": "Flow" }, h("a", { href: href("run", task.flow) }, task.flow)),
    statusCell(task),
    progressCell(task),
    h("td", { "data-label": "Worker" }, task.worker_id ?? "—",
      task.peak_vram_bytes != null
        ? h("div", { class: "small muted peak-vram" }, `Peak VRAM ${formatBytes(task.peak_vram_bytes)}`) : null),
    timesCell(task),
    actionsCell(task, act));
}

/** A progress event applied to an existing row, in place (no request). */
export function applyProgress(row, event) {
  const percent = Math.round(event.progress ?? 0);
  const progress = row.querySelector("progress");
  if (progress) progress.value = percent;
  const text = row.querySelector(".progress-text");
  if (text) text.textContent = `${percent} %`;
  const node = row.querySelector(".current-node");
  if (node) node.textContent = event.current_node ? `Running node ${event.current_node}` : "";
}

/** Replaces `row` by `fresh`, keeping the keyboard focus on the same action (or the row) when it was inside. */
export function swapRow(row, fresh) {
  const focused = row.contains(document.activeElement) ? document.activeElement : null;
  row.replaceWith(fresh);
  if (!focused) return;
  const action = focused.dataset?.action;
  const target = (action && fresh.querySelector(`[data-action="${action}"]`)) || fresh.querySelector("button, a");
  target?.focus();
}

/** Is the output a picture the browser can show? */
export function isImage(file) {
  return /\.(png|jpe?g|webp|gif|bmp|avif)$/i.test(file.name ?? "");
}

/** The URL of a task file, relative to the page. */
export function fileUrl(file) {
  return pageUrl(file.url);
}
