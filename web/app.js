// The page's start: theme, server version, who the user is (GET /vapi/auth/me: the sign-in page when the server asks
// for it), the shared events socket, and the router that mounts one page at a time. Any 401 later (the session
// ended or was revoked) brings the sign-in page back.

import { api, setUnauthorizedHandler } from "./api.js";
import { EventSocket, eventsUrl } from "./events.js";
import { clearMessages, showError, showMessage } from "./notices.js";
import * as accountPage from "./pages/account.js";
import * as flowsPage from "./pages/flows.js";
import * as loginPage from "./pages/login.js";
import * as modelsPage from "./pages/models.js";
import * as queuePage from "./pages/queue.js";
import * as runPage from "./pages/run.js";
import * as workersPage from "./pages/workers.js";
import { currentRoute, startRouter } from "./router.js";
import { authRequired, currentUser, isAdmin, nextPath, setSession, signedIn } from "./session.js";
import { setUpTheme } from "./theme.js";

const PAGES = { flows: flowsPage, run: runPage, queue: queuePage, workers: workersPage, models: modelsPage,
  account: accountPage };
const TITLES = { flows: "Flows", run: "Run", queue: "Queue", workers: "Workers", models: "Models",
  account: "My account", login: "Sign in" };
const LIVE_TEXT = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…" };
const OPEN = { auth_required: false, user: null, role: "admin" };

let unmount = null;
let controller = null;
let firstRoute = true;
let routerStarted = false;

/** Mounts `module` as the one page in <main> (the previous page's requests are aborted). */
function mountPage(page, module, context) {
  controller?.abort();
  unmount?.();
  controller = new AbortController();
  clearMessages("success");
  for (const link of document.querySelectorAll("nav a[data-page]")) {
    if (link.dataset.page === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${TITLES[page]} · Visionatrix`;
  const main = document.getElementById("main");
  main.dataset.page = page;
  unmount = module.mount(main, { ...context, signal: controller.signal }) ?? null;
  // Keyboard and screen reader users land on the new page's heading; the first load leaves focus alone.
  if (!firstRoute && page !== "login") (main.querySelector("h1") ?? main).focus();
  firstRoute = false;
}

function showPage({ page, arg }) {
  if (!signedIn()) return;  // the sign-in page stays until the user signs in
  const allowed = (page !== "workers" || isAdmin()) && (page !== "account" || currentUser() !== null);
  mountPage(allowed ? page : "flows", PAGES[allowed ? page : "flows"],
    { arg: allowed ? arg : null, events, onSignedOut: signOut });
}

/** The header for who is signed in: name, role and Sign out; the nav without what the user may not open. */
function showAccount() {
  const user = currentUser();
  const showing = signedIn();
  document.getElementById("pages-nav").hidden = !showing;
  document.getElementById("live-state").hidden = !showing;
  document.getElementById("account").hidden = !(showing && user);
  document.getElementById("account-name").textContent = user?.name ?? "";
  document.getElementById("account-role").textContent = user?.role ?? "";
  for (const item of document.querySelectorAll("[data-admin-only]")) item.hidden = !isAdmin();
  for (const item of document.querySelectorAll("[data-account-only]")) item.hidden = !user;
}

/** The sign-in page (after a 401, a sign-out, or on load when nobody is signed in), with `message` above it. */
function showLogin(message) {
  const wasShowing = !signedIn() && document.getElementById("main").dataset.page === "login";
  setSession({ auth_required: true, user: null, role: "anonymous" });
  events.stop();
  showAccount();
  if (wasShowing) return;  // several calls failed at once: one sign-in page, its typing kept
  clearMessages();
  mountPage("login", loginPage, { onSignedIn });
  if (message) showMessage(message, "info");
}

function onSignedIn() {
  const next = nextPath(location.search);
  if (next) {
    location.assign(next);  // e.g. back to the graph editor that sent the user here
    return;
  }
  clearMessages();
  start();
}

async function signOut(message = "You are signed out.") {
  try {
    await api("auth/logout", { method: "POST", expect401: true });
  } catch (error) {
    if (error.status !== 0) showError(error, "Could not sign out");
  }
  showLogin(message);
}

/** Reads who the user is, then shows the sign-in page or the UI. */
async function start() {
  let me = OPEN;
  try {
    me = await api("auth/me");
  } catch (error) {
    if (error.status !== 404) showError(error, "Could not ask the server who you are");  // 404: an older server
  }
  if (me.auth_required && !me.user) {
    showLogin();
    return;
  }
  setSession(me);
  showAccount();
  events.start();
  if (routerStarted) {
    showPage(currentRoute());
  } else {
    routerStarted = true;
    startRouter(showPage);
  }
}

/** The socket lost: when sign-in is on, the session may have ended (a WebSocket cannot say 401). */
async function checkSession() {
  if (!authRequired() || !signedIn()) return;
  try {
    const me = await api("auth/me");
    if (me.auth_required && !me.user) showLogin("Your session ended. Sign in again.");
  } catch {
    // the server is away: the socket keeps trying
  }
}

function showLiveState(state) {
  const element = document.getElementById("live-state");
  element.dataset.state = state;
  element.textContent = LIVE_TEXT[state] ?? state;
  element.title = state === "live" ? "Updates are pushed by the server" : "Waiting for the server's event stream";
  if (state === "reconnecting") checkSession();
}

async function showVersion() {
  try {
    const { version } = await api("health");
    document.getElementById("version").textContent = `v${version}`;
  } catch (error) {
    showError(error, "The server did not answer");
  }
}

window.addEventListener("unhandledrejection", (event) => {
  if (event.reason?.name !== "AbortError") showError(event.reason, "Unexpected error");
});

// The skip link moves the focus without touching the hash (the router owns it).
document.querySelector(".skip-link").addEventListener("click", (event) => {
  event.preventDefault();
  document.getElementById("main").focus();
});
document.getElementById("sign-out").addEventListener("click", () => signOut());

const events = new EventSocket(eventsUrl(), { onState: showLiveState });
setUnauthorizedHandler(() => showLogin("Your session ended. Sign in again."));
setUpTheme(document.getElementById("theme"));
showVersion();
start();
