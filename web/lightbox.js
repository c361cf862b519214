// The full-size view of results: a modal <dialog>; Esc closes, Left/Right move between images, a download link,
// and for image-to-image tasks a before/after comparison with the task's input.

import { compareView } from "./compare.js";
import { h, replace, uid } from "./dom.js";
import { formatBytes } from "./format.js";

/**
 * Opens the lightbox on `items[index]`. Each item: `{url, name, sizeBytes, taskId, flow, inputUrl}` (`inputUrl`:
 * the task's input image, or null). Focus returns to the element that had it when the dialog closes.
 */
export function openLightbox(items, index) {
  const opener = document.activeElement;
  const titleId = uid("lightbox-title");
  const title = h("h2", { id: titleId });
  const meta = h("p", { class: "small muted lightbox-meta" });
  const stage = h("div", { class: "lightbox-stage" });
  const previous = h("button", { type: "button", "aria-label": "Previous image" }, "‹ Previous");
  const next = h("button", { type: "button", "aria-label": "Next image" }, "Next ›");
  const compare = h("button", { type: "button", "aria-pressed": "false" }, "Compare with input");
  const download = h("a", { class: "button primary", download: "" }, "Download");
  const close = h("button", { type: "button", class: "icon-button", "aria-label": "Close" }, "×");
  const dialog = h("dialog", { class: "lightbox", "aria-labelledby": titleId },
    h("div", { class: "lightbox-header" }, h("div", {}, title, meta), close),
    stage,
    h("div", { class: "lightbox-footer button-row" }, previous, compare, download, next));
  let current = index;
  let comparing = false;

  const show = () => {
    const item = items[current];
    title.textContent = item.name;
    meta.textContent = `Task #${item.taskId} · ${item.flow} · ${formatBytes(item.sizeBytes)} · ` +
      `${current + 1} of ${items.length}`;
    download.href = item.url;
    download.setAttribute("download", item.name.split("/").pop());
    download.setAttribute("aria-label", `Download ${item.name}`);
    previous.disabled = current === 0;
    next.disabled = current === items.length - 1;
    compare.hidden = !item.inputUrl;
    const inCompare = comparing && Boolean(item.inputUrl);
    compare.setAttribute("aria-pressed", String(inCompare));
    replace(stage, inCompare
      ? compareView(item.inputUrl, item.url, `Task #${item.taskId}: input (left) and result (right)`)
      : h("img", { class: "lightbox-image", src: item.url, alt: `Result ${item.name} of task ${item.taskId}` }));
  };
  const move = (step) => {
    const target = current + step;
    if (target < 0 || target >= items.length) return;
    current = target;
    show();
  };

  previous.addEventListener("click", () => move(-1));
  next.addEventListener("click", () => move(1));
  compare.addEventListener("click", () => {
    comparing = !comparing;
    show();
  });
  close.addEventListener("click", () => dialog.close());
  dialog.addEventListener("keydown", (event) => {
    if (event.target instanceof HTMLInputElement) return;  // the comparison slider uses the arrow keys itself
    if (event.key === "ArrowLeft") move(-1);
    else if (event.key === "ArrowRight") move(1);
    else return;
    event.preventDefault();
  });
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close();  // a click on the backdrop
  });
  dialog.addEventListener("close", () => {
    dialog.remove();
    if (opener instanceof HTMLElement && opener.isConnected) opener.focus();
  });
  document.body.append(dialog);
  show();
  dialog.showModal();
  close.focus();
  return dialog;
}
