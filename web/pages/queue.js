// Queue page: the task list (newest first, filter by status, load more), kept current by pushed events only —
// progress is applied in place, any other event refetches that one task; after a reconnect the list is read again.
// Below it, the results gallery.

import { api } from "../api.js";
import { confirmAction } from "../confirm.js";
import { h, replace, uid } from "../dom.js";
import { openTaskResults, renderGallery } from "../gallery.js";
import { announce, showError, showMessage } from "../notices.js";
import { href } from "../router.js";
import { applyProgress, swapRow, taskRow } from "../task_row.js";

const PAGE_SIZE = 50;
const STATUSES = ["pending", "claimed", "running", "finished", "failed", "cancelled"];
const GALLERY_DELAY_MS = 150;

export function mount(main, { arg, events, signal }) {
  const focusId = arg && /^\d+$/.test(arg) ? Number(arg) : null;
  const tasks = new Map();  // id -> task, the loaded ones
  const rows = new Map();   // id -> <tr>
  let offset = 0;
  let hasMore = false;
  let revealed = false;
  let loading = null;       // ids that had events while the list was loading, refetched after it
  const fetching = new Map();  // id -> in-flight refetch (one at a time per task; one more queued at most)

  const filterId = uid("status-filter");
  const filter = h("select", { id: filterId },
    h("option", { value: "" }, "All"), STATUSES.map((status) => h("option", { value: status }, status)));
  const body = h("tbody", {});
  const table = h("table", { class: "tasks responsive-table", hidden: true },
    h("caption", { class: "visually-hidden" }, "Tasks, newest first"),
    h("thead", {}, h("tr", {}, ["Task", "Flow", "Status", "Progress", "Worker", "Times", "Actions"]
      .map((name) => h("th", { scope: "col" }, name)))),
    body);
  const empty = h("p", { class: "empty", hidden: true }, "No tasks here yet. ", h("a", { href: href("run") },
    "Run a flow"), ".");
  const more = h("button", { type: "button", hidden: true, onclick: () => loadPage(false) }, "Load more");
  const gallery = h("ul", { class: "gallery", "aria-label": "Results" });
  replace(main,
    h("h1", { tabindex: "-1" }, "Queue"),
    h("div", { class: "toolbar" },
      h("label", { for: filterId }, "Status"), filter,
      h("button", { type: "button", onclick: () => loadPage(true) }, "Reload")),
    h("div", { class: "table-wrap" }, table),
    empty,
    h("div", { class: "button-row" }, more),
    h("section", { "aria-labelledby": "results-heading" },
      h("h2", { id: "results-heading" }, "Results"), gallery));

  const sorted = () => [...tasks.values()].sort((a, b) => b.id - a.id);
  let galleryTimer = null;
  const refreshGallery = () => {
    clearTimeout(galleryTimer);
    galleryTimer = setTimeout(() => renderGallery(gallery, sorted()), GALLERY_DELAY_MS);
  };
  const matches = (task) => !filter.value || task.status === filter.value;

  function put(task) {
    tasks.set(task.id, task);
    const fresh = taskRow(task, act);
    const old = rows.get(task.id);
    rows.set(task.id, fresh);
    if (old) {
      swapRow(old, fresh);
    } else {
      const before = [...rows.keys()].filter((id) => id < task.id && rows.get(id).isConnected)
        .sort((a, b) => b - a)[0];
      body.insertBefore(fresh, before === undefined ? null : rows.get(before));
    }
    empty.hidden = true;
    table.hidden = false;
    refreshGallery();
  }

  function drop(taskId) {
    const row = rows.get(taskId);
    if (!row) return;
    if (row.contains(document.activeElement)) main.querySelector("h1").focus();
    row.remove();
    rows.delete(taskId);
    tasks.delete(taskId);
    offset = Math.max(0, offset - 1);
    empty.hidden = rows.size > 0;
    table.hidden = rows.size === 0;
    refreshGallery();
  }

  async function loadPage(fromStart) {
    if (fromStart) {
      loading = new Set();
      offset = 0;
    }
    const query = new URLSearchParams({ limit: String(PAGE_SIZE), offset: String(offset) });
    if (filter.value) query.set("status", filter.value);
    more.disabled = true;
    try {
      const answer = await api(`tasks?${query}`, { signal });
      if (signal.aborted) return;
      if (fromStart) {
        body.replaceChildren();
        rows.clear();
        tasks.clear();
      }
      for (const task of answer.tasks) put(task);
      offset += answer.tasks.length;
      hasMore = answer.tasks.length === PAGE_SIZE;
      empty.hidden = rows.size > 0;
      table.hidden = rows.size === 0;
    } catch (error) {
      if (!signal.aborted) showError(error, "Could not load the tasks");
    } finally {
      more.hidden = !hasMore;
      more.disabled = false;
    }
    if (fromStart) {
      const missed = loading ?? new Set();
      loading = null;
      for (const id of missed) refetch(id);
      if (focusId !== null && !revealed) {
        revealed = true;  // once: a reload after a reconnect leaves the view where the user is
        await reveal(focusId);
      }
    }
    refreshGallery();
  }

  /** Reads one task again; 404 removes it. A new task enters the list when it fits the filter. */
  function refetch(taskId) {
    if (loading) {
      loading.add(taskId);
      return;
    }
    const state = fetching.get(taskId);
    if (state) {
      state.again = true;
      return;
    }
    const entry = { again: false };
    fetching.set(taskId, entry);
    (async () => {
      do {
        entry.again = false;
        try {
          const task = await api(`tasks/${taskId}`, { signal });
          if (signal.aborted) return;
          if (rows.has(taskId) || matches(task)) {
            if (!rows.has(taskId)) offset += 1;
            put(task);
          }
        } catch (error) {
          if (signal.aborted) return;
          if (error.status === 404) drop(taskId);
          else showError(error, `Could not read task #${taskId}`);
        }
      } while (entry.again);
      fetching.delete(taskId);
    })();
  }

  async function reveal(taskId) {
    if (!rows.has(taskId)) {
      try {
        put(await api(`tasks/${taskId}`, { signal }));
      } catch (error) {
        if (!signal.aborted) showError(error, `Could not read task #${taskId}`);
        return;
      }
    }
    const row = rows.get(taskId);
    row.classList.add("highlight");
    row.scrollIntoView({ block: "center" });
  }

  async function act(action, task) {
    if (action === "results") {
      if (!openTaskResults(sorted(), task.id)) {
        showMessage(["Task #", String(task.id), " has no image results; its files: ",
          (task.outputs ?? []).map((file) => h("a", { href: file.url.replace(/^\/+/, "") }, file.name))], "info");
      }
      return;
    }
    if (action === "previews") {  // temporary outputs (PreviewImage): only listed when asked
      showMessage(["Previews of task #", String(task.id), " (removed after a while): ",
        (task.previews ?? []).map((file) => h("a", { href: file.url.replace(/^\/+/, "") }, file.name))], "info");
      return;
    }
    if (action === "delete" && !await confirmAction(`Delete task #${task.id} and its files?`, "Delete")) return;
    try {
      if (action === "delete") {
        await api(`tasks/${task.id}`, { method: "DELETE" });
        drop(task.id);
        announce(`Deleted task ${task.id}`);
      } else {
        put(await api(`tasks/${task.id}/${action}`, { method: "POST" }));
        announce(action === "cancel" ? `Cancel requested for task ${task.id}` : `Task ${task.id} queued again`);
      }
    } catch (error) {
      showError(error, `Could not ${action} task #${task.id}`);
    }
  }

  const onEvent = (event) => {
    if (typeof event.type !== "string" || !event.type.startsWith("task_") || event.task_id === undefined) return;
    const row = rows.get(event.task_id);
    if (event.type === "task_deleted") {
      drop(event.task_id);
    } else if (event.type === "task_progressed" && row && !["pending", "claimed"].includes(row.dataset.status)) {
      if (row.dataset.status !== "running") return;  // a late report of a task that has ended
      const task = tasks.get(event.task_id);
      task.progress = event.progress;
      task.current_node = event.current_node;
      applyProgress(row, event);
    } else if (row || !filter.value || event.status === undefined || event.status === filter.value) {
      refetch(event.task_id);
    }
  };

  filter.addEventListener("change", () => loadPage(true));
  const unsubscribe = events.subscribe(onEvent);
  const unsubscribeResync = events.onResync(() => loadPage(true));
  loadPage(true);
  return () => {
    unsubscribe();
    unsubscribeResync();
    clearTimeout(galleryTimer);
  };
}
