// Sign-in page: user name and password, POST /vapi/auth/login (the server sets the session cookie); a wrong
// password and too many attempts are said under the form. The password goes only into the request's JSON body:
// never into the URL (the form has method="post" and is never submitted natively) nor into any storage.

import { api } from "../api.js";
import { h, replace, uid } from "../dom.js";

/** `onSignedIn(user)` runs after a successful sign-in. */
export function mount(main, { onSignedIn }) {
  const nameId = uid("login-name");
  const passwordId = uid("login-password");
  const errorId = uid("login-error");
  const name = h("input", { id: nameId, name: "username", autocomplete: "username", required: true,
    autocapitalize: "none", spellcheck: "false", maxlength: "64" });
  const password = h("input", { id: passwordId, name: "password", type: "password", autocomplete: "current-password",
    required: true, maxlength: "1024" });
  const error = h("p", { id: errorId, class: "form-error", role: "alert", hidden: true });
  const submit = h("button", { type: "submit", class: "primary" }, "Sign in");
  const form = h("form", { class: "panel login-form", method: "post", action: "", novalidate: true,
    "aria-labelledby": "login-heading" },
  h("div", { class: "field" }, h("label", { for: nameId }, "User name"), name),
  h("div", { class: "field" }, h("label", { for: passwordId }, "Password"), password),
  error,
  h("div", { class: "button-row" }, submit));
  replace(main,
    h("div", { class: "login" },
      h("h1", { id: "login-heading", tabindex: "-1" }, "Sign in"),
      h("p", { class: "lead" }, "This Visionatrix server asks who you are."),
      form));

  const say = (text, field) => {
    error.textContent = text;
    error.hidden = !text;
    for (const control of [name, password]) {
      if (text && control === field) {
        control.setAttribute("aria-invalid", "true");
        control.setAttribute("aria-describedby", errorId);
      } else {
        control.removeAttribute("aria-invalid");
        control.removeAttribute("aria-describedby");
      }
    }
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!name.value.trim()) {
      say("Enter your user name.", name);
      name.focus();
      return;
    }
    if (!password.value) {
      say("Enter your password.", password);
      password.focus();
      return;
    }
    say("");
    submit.disabled = true;
    submit.textContent = "Signing in…";
    try {
      const answer = await api("auth/login", { method: "POST", expect401: true,
        json: { name: name.value.trim(), password: password.value } });
      password.value = "";
      onSignedIn(answer.user);
    } catch (failure) {
      password.value = "";
      say(describe(failure), password);
      password.focus();
    } finally {
      submit.disabled = false;
      submit.textContent = "Sign in";
    }
  });
  name.focus();
}

function describe(failure) {
  if (failure.status === 401) return "Wrong user name or password.";
  if (failure.status === 429) {
    const seconds = Number(failure.details?.retry_after_s) || 60;
    return `Too many failed sign-ins. Try again in ${seconds} second${seconds === 1 ? "" : "s"}.`;
  }
  return failure.message || "Could not sign in.";
}
