// The results gallery: the outputs of finished tasks as thumbnails, each opening the lightbox.

import { h, replace } from "./dom.js";
import { openLightbox } from "./lightbox.js";
import { fileUrl, isImage } from "./task_row.js";

/** The lightbox items of `tasks` (newest first): every image output of each finished task. */
export function resultItems(tasks) {
  const items = [];
  for (const task of tasks) {
    if (task.status !== "finished") continue;
    const input = (task.inputs ?? []).find(isImage);
    for (const output of task.outputs ?? []) {
      if (!isImage(output)) continue;
      items.push({ url: fileUrl(output), name: output.name, sizeBytes: output.size_bytes, taskId: task.id,
        flow: task.flow, inputUrl: input ? fileUrl(input) : null, key: `${task.id}/${output.name}` });
    }
  }
  return items;
}

/** Opens the lightbox on the first result of task `taskId`, if it has one. */
export function openTaskResults(tasks, taskId) {
  const items = resultItems(tasks);
  const index = items.findIndex((item) => item.taskId === taskId);
  if (index >= 0) openLightbox(items, index);
  return index >= 0;
}

/** Fills `list` (a <ul>) with a thumbnail button per result; keeps the focus on the same result when redrawn. */
export function renderGallery(list, tasks) {
  const items = resultItems(tasks);
  const focusedKey = list.contains(document.activeElement) ? document.activeElement.dataset.key : null;
  const fresh = items.map((item, index) => {
    const button = h("button", { type: "button", class: "thumb", "data-key": item.key,
      "aria-label": `Open ${item.name} of task ${item.taskId} full size`, onclick: () => openLightbox(items, index) },
    h("img", { src: item.url, alt: "", loading: "lazy" }));
    return h("li", {}, button, h("span", { class: "thumb-caption small muted" }, `#${item.taskId} ${item.flow}`));
  });
  if (!fresh.length) {
    replace(list, h("li", { class: "empty" }, "Finished tasks' images will appear here."));
    return;
  }
  replace(list, fresh);
  if (focusedKey) list.querySelector(`[data-key="${CSS.escape(focusedKey)}"]`)?.focus();
}
