// Building DOM without HTML strings: every server-provided text goes in as a text node, never as markup.

const PROPERTIES = new Set(["value", "checked", "disabled", "selected", "hidden", "open", "multiple", "indeterminate"]);

/**
 * h("button", {class: "primary", type: "button", onclick: fn}, "Run") -> <button class="primary">Run</button>.
 * Strings and numbers among the children become text nodes; null, undefined and false are skipped; arrays are
 * flattened. Props: `class`, `on<event>` (a listener), DOM properties (`value`, `checked`, ...), anything else an
 * attribute (false / null / undefined: left out; true: present and empty).
 */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") element.className = value;
    else if (key.startsWith("on") && typeof value === "function") element.addEventListener(key.slice(2), value);
    else if (PROPERTIES.has(key)) element[key] = value;
    else element.setAttribute(key, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Replaces everything inside `parent` with `children`. */
export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

let nextId = 0;

/** A new id for linking a label or message to its control. */
export function uid(prefix) {
  nextId += 1;
  return `${prefix}-${nextId}`;
}
