// The run form of a flow, generated from its manifest `inputs`: one field per visible parameter, sorted by `order`;
// required ones first, then collapsed "Optional" and "Advanced" sections. Reads the values back for submission and
// shows the server's per-parameter problems under their fields.

import { h, uid } from "./dom.js";
import { dropZone } from "./dropzone.js";

const FILE_TYPES = new Set(["image", "image_mask", "mask"]);
const SLIDER_TYPES = new Set(["range", "range_scale"]);

export function isFileInput(input) {
  return FILE_TYPES.has(input.type);
}

function label(input, id) {
  const name = input.display_name || input.name;
  return h("label", { for: id }, name, input.optional ? null : h("span", { class: "required" }, " (required)"));
}

function numberAttributes(input) {
  const step = input.step ?? (input.integer ? 1 : "any");
  return { min: input.min ?? null, max: input.max ?? null, step };
}

function textControl(input, id) {
  return { control: h("textarea", { id, rows: 3, value: input.default ?? "" }) };
}

function numberControl(input, id) {
  return { control: h("input", { id, type: "number", ...numberAttributes(input), value: input.default ?? "" }) };
}

/** A slider with a number box showing (and setting) the same value; the number box holds the submitted value. */
function sliderControl(input, id) {
  if (input.min === undefined || input.min === null || input.max === undefined || input.max === null) {
    return numberControl(input, id);
  }
  const attributes = numberAttributes(input);
  if (attributes.step === "any") attributes.step = (input.max - input.min) / 100;
  const value = input.default ?? input.min;
  const slider = h("input", { id, type: "range", ...attributes, value });
  const box = h("input", { type: "number", class: "slider-value", ...attributes,
    "aria-label": `${input.display_name || input.name}, exact value`, value });
  slider.addEventListener("input", () => { box.value = slider.value; });
  box.addEventListener("input", () => { if (box.value !== "") slider.value = box.value; });
  return { control: box, focusable: slider, extra: h("div", { class: "slider" }, slider, box) };
}

function boolControl(input, id) {
  return { control: h("input", { id, type: "checkbox", checked: Boolean(input.default) }) };
}

function listControl(input, id) {
  const options = Object.entries(input.options ?? {});
  const defaultKey = options.find(([key]) => key === input.default)?.[0]
    ?? options.find(([, value]) => value === input.default)?.[0];
  return {
    control: h("select", { id }, options.map(([key]) => h("option", { value: key, selected: key === defaultKey }, key))),
  };
}

function fileControl(input, id) {
  const control = h("input", { id, type: "file", accept: "image/*" });
  return { control, extra: dropZone(control, { hint: "Drop an image here, or choose a file", preview: true }) };
}

function controlFor(input, id) {
  if (isFileInput(input)) return fileControl(input, id);
  if (SLIDER_TYPES.has(input.type)) return sliderControl(input, id);
  if (input.type === "number") return numberControl(input, id);
  if (input.type === "bool") return boolControl(input, id);
  if (input.type === "list") return listControl(input, id);
  return textControl(input, id);
}

/** One field: its wrapper, the control that holds the value, and the element for a problem under it. */
function buildField(input) {
  const id = uid(`param-${input.name}`.replace(/[^\w-]/g, "_"));
  const { control, focusable, extra } = controlFor(input, id);
  const error = h("p", { class: "field-error", id: `${id}-error`, hidden: true });
  const wrapper = input.type === "bool"
    ? h("div", { class: "field field-check" }, control, label(input, id), error)
    : h("div", { class: "field" }, label(input, id), extra ?? control, error);
  return { input, control, focusable: focusable ?? control, error, wrapper };
}

/**
 * The form's sections for `inputs` and the way back to values. Returns `{sections, fields, values, showProblems,
 * clearProblems}`: `sections` are nodes to put in the form; `values()` is `[[name, string | File], ...]`;
 * `showProblems({param: problem})` marks each field and returns the problems no field showed.
 */
export function buildParamFields(inputs) {
  const visible = inputs.filter((input) => !input.hidden)
    .map((input, index) => ({ input, index }))
    .sort((a, b) => (a.input.order ?? 99) - (b.input.order ?? 99) || a.index - b.index)
    .map(({ input }) => input);
  const fields = new Map(visible.map((input) => [input.name, buildField(input)]));
  const group = (test) => [...fields.values()].filter((field) => test(field.input)).map((field) => field.wrapper);
  const required = group((input) => !input.advanced && !input.optional);
  const optional = group((input) => !input.advanced && input.optional);
  const advanced = group((input) => input.advanced);
  const section = (title, nodes) => (nodes.length
    ? h("details", { class: "form-section" }, h("summary", {}, `${title} (${nodes.length})`),
      h("div", { class: "form-fields" }, nodes)) : null);
  const sections = [
    required.length ? h("div", { class: "form-fields" }, required) : null,
    section("Optional", optional),
    section("Advanced", advanced),
  ];
  return {
    sections,
    fields,
    values: () => collectValues(fields),
    showProblems: (problems) => showProblems(fields, problems),
    clearProblems: () => { for (const field of fields.values()) markField(field, null); },
  };
}

function collectValues(fields) {
  const values = [];
  for (const [name, { input, control }] of fields) {
    if (isFileInput(input)) {
      if (control.files?.[0]) values.push([name, control.files[0]]);
    } else if (input.type === "bool") {
      values.push([name, control.checked ? "true" : "false"]);
    } else if (control.value !== "") {
      values.push([name, control.value]);
    }
  }
  return values;
}

function markField(field, problem) {
  const described = field.focusable;
  field.error.hidden = !problem;
  field.error.textContent = problem ?? "";
  for (const element of new Set([field.control, described])) {
    if (problem) {
      element.setAttribute("aria-invalid", "true");
      element.setAttribute("aria-describedby", field.error.id);
    } else {
      element.removeAttribute("aria-invalid");
      element.removeAttribute("aria-describedby");
    }
  }
  field.wrapper.classList.toggle("invalid", Boolean(problem));
}

function showProblems(fields, problems) {
  const given = problems ?? {};
  let first = null;
  for (const [name, field] of fields) {
    if (!(name in given)) continue;
    markField(field, String(given[name]));
    const details = field.wrapper.closest("details");
    if (details) details.open = true;
    first ??= field;
  }
  first?.focusable.focus();
  return Object.fromEntries(Object.entries(given).filter(([name]) => !fields.has(name)));
}
