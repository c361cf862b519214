// The hash router: "#/flows", "#/run/<flow>", "#/queue", "#/queue/<task id>", "#/workers", "#/models",
// "#/models/<flow>", "#/account".

export const PAGES = ["flows", "run", "queue", "workers", "models", "account"];
const DEFAULT_PAGE = "flows";

/** The current route: `{page, arg}`; `arg` is the decoded second part of the hash (a flow name, a task id). */
export function currentRoute() {
  const parts = location.hash.replace(/^#\/?/, "").split("/");
  const page = PAGES.includes(parts[0]) ? parts[0] : DEFAULT_PAGE;
  let arg = null;
  if (parts.length > 1 && parts[1] !== "") {
    try {
      arg = decodeURIComponent(parts.slice(1).join("/"));
    } catch {
      arg = null;
    }
  }
  return { page, arg };
}

/** The hash of a page: href("run", "pencil_sketch") -> "#/run/pencil_sketch". */
export function href(page, arg) {
  return arg === undefined || arg === null ? `#/${page}` : `#/${page}/${encodeURIComponent(arg)}`;
}

/** Calls `onRoute(route)` now and on every hash change. */
export function startRouter(onRoute) {
  window.addEventListener("hashchange", () => onRoute(currentRoute()));
  onRoute(currentRoute());
}
