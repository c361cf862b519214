// Account page (only when the server asks for sign-in): who is signed in, the user's API tokens (list, create with
// the secret shown once and a copy button, revoke) and a password change (which ends the user's web sessions, so
// the sign-in page follows).

import { api, segment } from "../api.js";
import { confirmAction } from "../confirm.js";
import { h, replace, uid } from "../dom.js";
import { formatRelative, formatTime } from "../format.js";
import { announce, showError, showMessage } from "../notices.js";
import { currentUser } from "../session.js";

const MAX_TOKEN_DAYS = 3650;

export function mount(main, { signal, onSignedOut }) {
  const user = currentUser();
  const tokens = tokensSection(signal);
  replace(main,
    h("h1", { tabindex: "-1" }, "My account"),
    h("p", { class: "lead" }, "Signed in as ", h("strong", {}, user?.name ?? "?"), ` (${user?.role ?? "?"}).`),
    tokens.element,
    passwordSection(onSignedOut));
  tokens.load();
}

function tokensSection(signal) {
  const nameId = uid("token-name");
  const daysId = uid("token-days");
  const name = h("input", { id: nameId, required: true, maxlength: "255", placeholder: "What it is for" });
  const days = h("input", { id: daysId, type: "number", min: "1", max: String(MAX_TOKEN_DAYS), step: "1",
    placeholder: "Never" });
  const secretBox = h("div", { class: "new-token", hidden: true });
  const body = h("tbody", {});
  const table = h("table", { class: "tokens responsive-table", hidden: true },
    h("caption", { class: "visually-hidden" }, "My API tokens"),
    h("thead", {}, h("tr", {}, ["Name", "Created", "Expires", "Last used", "State", "Actions"]
      .map((title) => h("th", { scope: "col" }, title)))),
    body);
  const empty = h("p", { class: "empty", hidden: true }, "You have no API token yet.");
  const form = h("form", { class: "token-form", novalidate: true, "aria-label": "Create an API token" },
    h("div", { class: "field" }, h("label", { for: nameId }, "Token name"), name),
    h("div", { class: "field" }, h("label", { for: daysId }, "Expires after (days, empty: never)"), days),
    h("div", { class: "button-row" }, h("button", { type: "submit", class: "primary" }, "Create token")));
  const element = h("section", { class: "panel", "aria-labelledby": "tokens-heading" },
    h("h2", { id: "tokens-heading", tabindex: "-1" }, "My API tokens"),
    h("p", { class: "small muted" }, "A token lets a script use the API as you: send it as ",
      h("code", {}, "Authorization: Bearer <token>"), ". Revoke a token you no longer need."),
    form, secretBox, h("div", { class: "table-wrap" }, table), empty);

  const load = async () => {
    try {
      const answer = await api("auth/tokens", { signal });
      if (signal.aborted) return;
      replace(body, answer.tokens.slice().reverse().map((token) => tokenRow(token, revoke)));
      table.hidden = answer.tokens.length === 0;
      empty.hidden = answer.tokens.length > 0;
    } catch (error) {
      if (!signal.aborted) showError(error, "Could not load your API tokens");
    }
  };

  async function revoke(token) {
    if (!await confirmAction(`Revoke the API token “${token.name}”? Scripts that use it stop working.`, "Revoke")) {
      return;
    }
    try {
      await api(`auth/tokens/${segment(token.id)}`, { method: "DELETE" });
      showMessage(`Revoked the API token “${token.name}”.`, "success");
      await load();
      element.querySelector("h2").focus();
    } catch (error) {
      showError(error, `Could not revoke ${token.name}`);
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!name.value.trim()) {
      showMessage("Give the token a name.", "error");
      name.focus();
      return;
    }
    const json = { name: name.value.trim() };
    if (days.value) json.expires_in_days = Number(days.value);
    try {
      const created = await api("auth/tokens", { method: "POST", json });
      name.value = "";
      days.value = "";
      showSecret(secretBox, created);
      await load();
    } catch (error) {
      showError(error, "Could not create the token");
    }
  });
  return { element, load };
}

/** The new token's secret, once: a read-only field, a copy button and the warning that it is not shown again. */
function showSecret(box, created) {
  const fieldId = uid("token-secret");
  const field = h("input", { id: fieldId, readonly: true, value: created.token, class: "token-secret",
    spellcheck: "false", autocomplete: "off" });
  const copy = h("button", { type: "button", class: "primary" }, "Copy");
  const done = h("button", { type: "button" }, "Done");
  copy.addEventListener("click", async () => {
    field.select();
    try {
      await navigator.clipboard.writeText(created.token);
    } catch {
      document.execCommand("copy");  // a page not served over https has no clipboard API
    }
    copy.textContent = "Copied";
    announce("The token is copied");
  });
  done.addEventListener("click", () => {
    replace(box);
    box.hidden = true;
    document.getElementById("tokens-heading")?.focus();
  });
  replace(box,
    h("p", { class: "warn", role: "status" }, h("strong", {}, `New token “${created.name}”. `),
      "Copy it now: it is not shown again. Anyone who has it can use this server as you."),
    h("label", { for: fieldId }, "New API token"),
    h("div", { class: "button-row" }, field, copy, done));
  box.hidden = false;
  field.focus();
  field.select();
}

function tokenRow(token, revoke) {
  const expired = token.expires_at && new Date(token.expires_at) <= new Date();
  const state = token.revoked ? "Revoked" : expired ? "Expired" : "Active";
  const cell = (label, ...content) => h("td", { "data-label": label }, ...content);
  const when = (iso, none) => iso ? h("time", { datetime: iso, title: formatTime(iso) }, formatRelative(iso)) : none;
  return h("tr", { "data-token": token.id, "data-state": state.toLowerCase() },
    h("th", { scope: "row", "data-label": "Name" }, token.name),
    cell("Created", when(token.created_at, "")),
    cell("Expires", token.expires_at ? formatTime(token.expires_at) : "Never"),
    cell("Last used", when(token.last_used_at, "Never")),
    cell("State", h("span", { class: `badge${state === "Active" ? " badge-ok" : ""}` }, state)),
    cell("Actions", state === "Active" ? h("button", { type: "button", class: "danger",
      "aria-label": `Revoke ${token.name}`, onclick: () => revoke(token) }, "Revoke") : null));
}

function passwordSection(onSignedOut) {
  const fields = [["current", "Current password", "current-password"], ["new", "New password (8 characters or more)",
    "new-password"], ["repeat", "Repeat the new password", "new-password"]].map(([key, label, autocomplete]) => {
    const id = uid(`password-${key}`);
    const control = h("input", { id, type: "password", autocomplete, required: true, maxlength: "1024" });
    return { key, control, wrapper: h("div", { class: "field" }, h("label", { for: id }, label), control) };
  });
  const [current, fresh, repeat] = fields.map((field) => field.control);
  const error = h("p", { class: "form-error", role: "alert", hidden: true });
  const form = h("form", { class: "password-form", method: "post", action: "", novalidate: true,
    "aria-label": "Change password" }, fields.map((field) => field.wrapper), error,
  h("div", { class: "button-row" }, h("button", { type: "submit" }, "Change password")));
  const say = (text, control) => {
    error.textContent = text;
    error.hidden = !text;
    control?.focus();
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (fresh.value.length < 8) return say("The new password needs 8 characters or more.", fresh);
    if (fresh.value !== repeat.value) return say("The two new passwords differ.", repeat);
    say("");
    try {
      await api("auth/password", { method: "POST",
        json: { current_password: current.value, new_password: fresh.value } });
      for (const control of [current, fresh, repeat]) control.value = "";
      onSignedOut?.("Your password is changed. Sign in with the new one.");
    } catch (failure) {
      if (failure.handled) return;
      current.value = "";
      say(failure.code === "invalid_credentials" ? "The current password is wrong." : failure.message,
        failure.code === "invalid_credentials" ? current : fresh);
    }
    return undefined;
  });
  return h("section", { class: "panel", "aria-labelledby": "password-heading" },
    h("h2", { id: "password-heading" }, "Change password"),
    h("p", { class: "small muted" }, "Changing it signs you out everywhere in the browser; API tokens keep working."),
    form);
}
