// A modal "are you sure?" as a <dialog>: focus starts on Cancel, Esc cancels, focus returns to the opener.

import { h, uid } from "./dom.js";

/** Resolves true when the user confirms `message`, false when they cancel (button, Esc). */
export function confirmAction(message, confirmLabel = "Delete") {
  const opener = document.activeElement;
  const textId = uid("confirm-text");
  const cancel = h("button", { type: "submit", value: "cancel", autofocus: true }, "Cancel");
  const confirm = h("button", { type: "submit", value: "confirm", class: "danger" }, confirmLabel);
  const dialog = h("dialog", { class: "confirm-dialog", "aria-labelledby": textId },
    h("form", { method: "dialog" },
      h("p", { id: textId }, message),
      h("div", { class: "button-row" }, cancel, confirm)));
  document.body.append(dialog);
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "confirm");
      dialog.remove();
      if (opener instanceof HTMLElement && opener.isConnected) opener.focus();
    });
    dialog.showModal();
  });
}
