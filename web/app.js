// The page's start: theme, server version, the shared events socket, and the router that mounts one page at a time.

import { api } from "./api.js";
import { EventSocket, eventsUrl } from "./events.js";
import { clearMessages, showError } from "./notices.js";
import * as flowsPage from "./pages/flows.js";
import * as modelsPage from "./pages/models.js";
import * as queuePage from "./pages/queue.js";
import * as runPage from "./pages/run.js";
import * as workersPage from "./pages/workers.js";
import { startRouter } from "./router.js";
import { setUpTheme } from "./theme.js";

const PAGES = { flows: flowsPage, run: runPage, queue: queuePage, workers: workersPage, models: modelsPage };
const TITLES = { flows: "Flows", run: "Run", queue: "Queue", workers: "Workers", models: "Models" };
const LIVE_TEXT = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…" };

let unmount = null;
let controller = null;
let firstRoute = true;

function showPage({ page, arg }) {
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
  unmount = PAGES[page].mount(main, { arg, events, signal: controller.signal }) ?? null;
  // Keyboard and screen reader users land on the new page's heading; the first load leaves focus alone.
  if (!firstRoute) (main.querySelector("h1") ?? main).focus();
  firstRoute = false;
}

function showLiveState(state) {
  const element = document.getElementById("live-state");
  element.dataset.state = state;
  element.textContent = LIVE_TEXT[state] ?? state;
  element.title = state === "live" ? "Updates are pushed by the server" : "Waiting for the server's event stream";
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

const events = new EventSocket(eventsUrl(), { onState: showLiveState });
setUpTheme(document.getElementById("theme"));
events.start();
showVersion();
startRouter(showPage);
