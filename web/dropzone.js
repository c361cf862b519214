// A file input inside a drop zone: drop a file on the zone, or use the input itself (it stays visible and focusable,
// so the keyboard and screen readers use it like any file input). Optional preview of a chosen image.

import { h } from "./dom.js";

/**
 * Wraps `input` (an <input type=file> with its own label elsewhere). `hint` is the zone's text; with `preview`, a
 * thumbnail of the chosen image is shown. `onChange(file | null)` runs after a choice or a drop.
 */
export function dropZone(input, { hint = "Drop a file here, or choose one", preview = false, onChange } = {}) {
  const thumbnail = preview ? h("img", { class: "drop-preview", alt: "", hidden: true }) : null;
  const fileName = h("span", { class: "drop-file-name" });
  const zone = h("div", { class: "drop-zone" },
    h("span", { class: "drop-hint", "aria-hidden": "true" }, hint), input, fileName, thumbnail);
  let objectUrl = null;

  const show = () => {
    const file = input.files?.[0] ?? null;
    fileName.textContent = file ? `${file.name} (${Math.round(file.size / 1024)} KB)` : "";
    if (thumbnail) {
      if (objectUrl) URL.revokeObjectURL(objectUrl);
      objectUrl = file && file.type.startsWith("image/") ? URL.createObjectURL(file) : null;
      thumbnail.hidden = !objectUrl;
      if (objectUrl) {
        thumbnail.src = objectUrl;
        thumbnail.alt = `Preview of ${file.name}`;
      } else {
        thumbnail.removeAttribute("src");
      }
    }
    onChange?.(file);
  };

  input.addEventListener("change", show);
  zone.addEventListener("dragover", (event) => {
    if (![...(event.dataTransfer?.types ?? [])].includes("Files")) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    zone.classList.add("drag-over");
  });
  zone.addEventListener("dragleave", (event) => {
    if (!zone.contains(event.relatedTarget)) zone.classList.remove("drag-over");
  });
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("drag-over");
    const file = event.dataTransfer?.files?.[0];
    if (!file) return;
    const transfer = new DataTransfer();
    transfer.items.add(file);
    input.files = transfer.files;
    show();
  });
  return zone;
}
