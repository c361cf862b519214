// The message area under the header (errors and confirmations, each dismissable) and the polite live region.

import { h } from "./dom.js";

const MAX_MESSAGES = 5;

function area() {
  return document.getElementById("messages");
}

/** Says `text` to screen readers without moving focus. */
export function announce(text) {
  const region = document.getElementById("announcer");
  region.textContent = "";
  // A change after a tick is announced even when the same text comes twice.
  setTimeout(() => { region.textContent = text; }, 50);
}

/**
 * Shows a message until dismissed. `kind` is "error" (role=alert) or "success"/"info" (role=status);
 * `content` is text or nodes (built with h(), never HTML). Returns the message element.
 */
export function showMessage(content, kind = "info") {
  const dismiss = h("button", { type: "button", class: "icon-button", "aria-label": "Dismiss message" }, "×");
  const message = h("div", { class: `message message-${kind}`, role: kind === "error" ? "alert" : "status" },
    h("div", { class: "message-body" }, content), dismiss);
  dismiss.addEventListener("click", () => {
    const wasFocused = message.contains(document.activeElement);
    message.remove();
    if (wasFocused) document.getElementById("main").focus();
  });
  const messages = area();
  messages.prepend(message);
  while (messages.children.length > MAX_MESSAGES) messages.lastElementChild.remove();
  return message;
}

/** An API failure (or any other error) as an error message: what failed, the server's message and its code. */
export function showError(error, doing = "") {
  if (error?.handled) return null;  // a 401: the sign-in page is shown instead
  const text = error?.message || String(error);
  const code = error?.code && error.code !== "network" ? ` (${error.code})` : "";
  const what = doing ? `${doing}: ` : "";
  return showMessage(`${what}${text}${code}`, "error");
}

/** Removes every message (on a page change, stale confirmations go away; errors stay until dismissed). */
export function clearMessages(kind) {
  for (const message of [...area().children]) {
    if (!kind || message.classList.contains(`message-${kind}`)) message.remove();
  }
}
