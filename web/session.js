// Who uses the page: the server's answer to GET /vapi/auth/me, kept for the pages that show admin-only controls.

const state = { authRequired: false, user: null, role: "admin" };

/** Keeps `me` ({auth_required, user, role}) as the page's signed-in state. */
export function setSession(me) {
  state.authRequired = Boolean(me?.auth_required);
  state.user = me?.user ?? null;
  state.role = me?.role ?? "anonymous";
}

/** Whether the server asks for sign-in (with it off everyone is the one admin and the UI has no accounts). */
export function authRequired() {
  return state.authRequired;
}

/** The signed-in user ({id, name, role, ...}) or null (sign-in off, or signed out). */
export function currentUser() {
  return state.user;
}

/** Whether flows, models and workers may be managed: an admin, or anyone when sign-in is off. */
export function isAdmin() {
  return state.role === "admin";
}

/** Whether the page may show anything but the sign-in form. */
export function signedIn() {
  return !state.authRequired || state.user !== null;
}

/**
 * The `next` of a query string ("?next=/comfy/") when it is a path on this server, else null: it must start with
 * one "/" (not "//" nor "/\", which browsers read as another host) and resolve to this page's origin.
 */
export function nextPath(search) {
  const next = new URLSearchParams(search).get("next");
  // A backslash anywhere counts as a slash to browsers ("/\host"); control characters are dropped by URL parsing.
  if (!next || !next.startsWith("/") || next.startsWith("//") || /[\u0000-\u001f\\]/.test(next)) return null;
  try {
    const url = new URL(next, location.origin);
    return url.origin === location.origin ? url.pathname + url.search + url.hash : null;
  } catch {
    return null;
  }
}
