// Before/after: the input image under the result, the result clipped at a divider that a slider (keyboard: arrow
// keys, Home, End) or a pointer drag moves.

import { h, uid } from "./dom.js";

/** A figure comparing `beforeUrl` (the task's input) with `afterUrl` (its result). */
export function compareView(beforeUrl, afterUrl, caption) {
  const sliderId = uid("compare");
  const before = h("img", { class: "compare-before", src: beforeUrl, alt: "Input image" });
  const after = h("img", { class: "compare-after", src: afterUrl, alt: "Result image" });
  const stage = h("div", { class: "compare-stage" }, before, after, h("div", { class: "compare-divider" }));
  const slider = h("input", { id: sliderId, type: "range", min: 0, max: 100, step: 1, value: 50,
    "aria-valuetext": "50 % input, 50 % result" });
  const figure = h("figure", { class: "compare" },
    stage,
    h("div", { class: "compare-control" },
      h("span", { "aria-hidden": "true" }, "Input"),
      h("label", { for: sliderId, class: "visually-hidden" }, "Divider between input and result"),
      slider,
      h("span", { "aria-hidden": "true" }, "Result")),
    h("figcaption", { class: "small muted" }, caption));

  const place = (percent) => {
    const value = Math.min(100, Math.max(0, Math.round(percent)));
    figure.style.setProperty("--position", `${value}%`);
    slider.value = value;
    slider.setAttribute("aria-valuetext", `${value} % input, ${100 - value} % result`);
  };
  slider.addEventListener("input", () => place(Number(slider.value)));
  stage.addEventListener("pointerdown", (event) => {
    stage.setPointerCapture(event.pointerId);
    const move = (e) => {
      const box = stage.getBoundingClientRect();
      place(((e.clientX - box.left) / box.width) * 100);
    };
    move(event);
    stage.addEventListener("pointermove", move);
    stage.addEventListener("pointerup", () => stage.removeEventListener("pointermove", move), { once: true });
  });
  after.addEventListener("load", () => {
    if (after.naturalWidth) stage.style.setProperty("--ratio", String(after.naturalWidth / after.naturalHeight));
  });
  place(50);
  return figure;
}
