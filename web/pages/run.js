// Run page: a flow's form (generated from its manifest), number of tasks and priority; queues the tasks with one
// multipart POST /vapi/tasks and shows the server's problems under their fields.

import { api, segment } from "../api.js";
import { h, replace, uid } from "../dom.js";
import { buildParamFields } from "../form.js";
import { announce, showError } from "../notices.js";
import { href } from "../router.js";

const RESERVED = new Set(["flow", "params", "count", "priority"]);

export function mount(main, { arg, signal }) {
  // One heading for the page's life: the router focuses it, and it keeps the focus when the flow has loaded.
  const heading = h("h1", { id: "run-heading", tabindex: "-1" }, arg ? "Run a flow" : "Choose a flow");
  const crumbs = h("p", { class: "breadcrumbs" }, h("a", { href: href("flows") }, "Flows"));
  const content = h("div", { "aria-busy": "true" }, h("p", { class: "muted" }, "Loading…"));
  replace(main, crumbs, heading, content);
  const page = { heading, crumbs, content };
  (arg ? showFlow(page, arg, signal) : showChooser(page, signal)).catch((error) => {
    if (signal.aborted) return;
    showError(error, arg ? `Could not load the flow ${arg}` : "Could not load the flows");
    if (arg) showChooser(page, signal).catch((again) => showError(again, "Could not load the flows"));
  });
}

async function showChooser({ heading, content }, signal) {
  const { flows } = await api("flows", { signal });
  if (signal.aborted) return;
  heading.textContent = "Choose a flow";
  content.removeAttribute("aria-busy");
  replace(content,
    flows.length
      ? h("ul", { class: "choice-list" }, flows.map((flow) => h("li", {},
        h("a", { href: href("run", flow.name) }, h("strong", {}, flow.display_name || flow.name)),
        flow.description ? h("span", { class: "muted" }, ` — ${flow.description}`) : null)))
      : h("p", { class: "empty" }, "No flow is installed. ", h("a", { href: href("flows") }, "Add one"), "."));
}

async function showFlow({ heading, crumbs, content }, name, signal) {
  const flow = await api(`flows/${segment(name)}`, { signal });
  if (signal.aborted) return;
  const title = flow.display_name || flow.name;
  const params = buildParamFields(flow.inputs ?? []);
  const count = numberField("count", "Number of tasks", 1, 100, 1);
  const priority = numberField("priority", "Priority (higher runs first)", -100, 100, 0);
  const formError = h("div", { class: "form-error", role: "alert", hidden: true });
  const result = h("div", { class: "form-result", role: "status" });
  const submit = h("button", { type: "submit", class: "primary" }, "Queue");
  const form = h("form", { class: "run-form", novalidate: true, "aria-labelledby": "run-heading" },
    params.sections,
    h("fieldset", { class: "form-section task-options" }, h("legend", {}, "Tasks"),
      h("div", { class: "form-fields two-columns" }, count.wrapper, priority.wrapper)),
    formError,
    h("div", { class: "button-row" }, submit),
    result);
  const missingNodes = flow.missing_node_types ?? [];
  const missingModels = (flow.models_missing ?? []).map((model) => model?.name ?? String(model));
  heading.textContent = title;
  crumbs.append(" / ", flow.name);
  content.removeAttribute("aria-busy");
  replace(content,
    flow.description ? h("p", { class: "lead" }, flow.description) : null,
    missingNodes.length ? h("p", { class: "notice warn" },
      `This server lacks node types of this flow (${missingNodes.join(", ")}); a worker that has them can run it.`)
      : null,
    missingModels.length ? h("p", { class: "notice warn" },
      `Model files missing on the server: ${missingModels.join(", ")}. A worker needs them to run this flow.`) : null,
    h("p", { class: "small" }, h("a", { href: `comfy/?vix_flow=${encodeURIComponent(flow.name)}` },
      "Open in the graph editor"), " · ", h("a", { href: `vapi/flows/${segment(flow.name)}` }, "Flow details (JSON)")),
    h("div", { class: "panel run-panel" }, form));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    params.clearProblems();
    for (const field of [count, priority]) field.mark(null);
    formError.hidden = true;
    result.replaceChildren();
    submit.disabled = true;
    submit.textContent = "Queueing…";
    try {
      const answer = await api("tasks", { method: "POST", body: formData(flow.name, params, count, priority) });
      showQueued(result, answer.task_ids ?? []);
    } catch (error) {
      if (signal.aborted) return;
      showProblems(error, { params, count, priority, formError });
    } finally {
      submit.disabled = false;
      submit.textContent = "Queue";
    }
  });
}

function formData(flowName, params, count, priority) {
  const data = new FormData();
  data.append("flow", flowName);
  data.append("count", count.control.value || "1");
  data.append("priority", priority.control.value || "0");
  const reserved = {};
  for (const [name, value] of params.values()) {
    if (RESERVED.has(name) && !(value instanceof File)) reserved[name] = value;
    else data.append(name, value);
  }
  if (Object.keys(reserved).length) data.append("params", JSON.stringify(reserved));
  return data;
}

function showQueued(result, taskIds) {
  const ids = taskIds.map((id) => `#${id}`).join(", ");
  const text = taskIds.length === 1 ? `Queued task ${ids}.` : `Queued ${taskIds.length} tasks (${ids}).`;
  replace(result, h("p", { class: "success" }, text, " ",
    h("a", { href: taskIds.length === 1 ? href("queue", taskIds[0]) : href("queue") }, "See it in the queue")));
  announce(text);
}

/** The server's 400s under their fields; anything else in the form's error box and the message area. */
function showProblems(error, { params, count, priority, formError }) {
  let unplaced = {};
  if (error.code === "invalid_params" || error.code === "invalid_request") {
    const details = { ...(error.details ?? {}) };
    for (const field of [count, priority]) {
      if (field.name in details && error.code === "invalid_request") {
        field.mark(String(details[field.name]));
        delete details[field.name];
      }
    }
    unplaced = params.showProblems(details);
  }
  const lines = [error.message];
  if (error.code === "invalid_graph") lines.push(...graphProblems(error.details));
  for (const [name, problem] of Object.entries(unplaced)) lines.push(`${name}: ${problem}`);
  replace(formError, h("p", {}, lines[0]), lines.length > 1 ? h("ul", {}, lines.slice(1).map((l) => h("li", {}, l))) : null);
  formError.hidden = false;
  if (!["invalid_params", "invalid_request", "invalid_graph"].includes(error.code)) showError(error, "Could not queue");
  if (!document.activeElement || document.activeElement === document.body || document.activeElement.type === "submit") {
    formError.setAttribute("tabindex", "-1");
    formError.focus();
  }
}

/** ComfyUI's `{error, node_errors}` as lines: "node 5 (ImageScale): width: value below minimum". */
function graphProblems(details) {
  const lines = [];
  if (details?.error?.message) lines.push(details.error.message + (details.error.details ? `: ${details.error.details}` : ""));
  for (const [nodeId, node] of Object.entries(details?.node_errors ?? {})) {
    for (const problem of node.errors ?? []) {
      lines.push(`node ${nodeId} (${node.class_type ?? "?"}): ${problem.message ?? ""}${problem.details ? ` — ${problem.details}` : ""}`);
    }
  }
  return lines;
}

function numberField(name, text, min, max, value) {
  const id = uid(`task-${name}`);
  const control = h("input", { id, type: "number", min, max, step: 1, value, required: true });
  const error = h("p", { class: "field-error", id: `${id}-error`, hidden: true });
  const wrapper = h("div", { class: "field field-inline" }, h("label", { for: id }, text), control, error);
  const mark = (problem) => {
    error.hidden = !problem;
    error.textContent = problem ?? "";
    if (problem) {
      control.setAttribute("aria-invalid", "true");
      control.setAttribute("aria-describedby", error.id);
    } else {
      control.removeAttribute("aria-invalid");
      control.removeAttribute("aria-describedby");
    }
  };
  return { name, control, wrapper, mark };
}
