// The REST API under /vapi: one fetch wrapper and one error shape for every failure (HTTP or network); a 401 (the
// session ended) goes to the handler the start module set, which shows the sign-in page.

/** A failed call: `status` (0 when the server could not be reached), `code` and `details` from the JSON body. */
export class ApiError extends Error {
  constructor(status, code, message, details = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details;
    /** True when the sign-in page already answers this failure (a 401): callers show no message for it. */
    this.handled = false;
  }
}

let onUnauthorized = null;

/** `handler(error)` runs on every 401 answer of a call made without `expect401`. */
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

/**
 * A server path ("/vapi/tasks/1/files/output/a.png" as the API lists it) as a URL relative to the page, so that the
 * UI also works when a proxy serves it under a prefix.
 */
export function pageUrl(path) {
  return String(path).replace(/^\/+/, "");
}

/**
 * Calls the API; the parsed JSON answer (null for 204). `path` is relative to /vapi ("tasks?limit=50").
 * Options: `method`, `json` (sent as a JSON body), `body` (FormData and the like), `signal`, `expect401` (the
 * caller reads a 401 itself, as sign-in does for a wrong password). Throws ApiError for a network failure or any
 * answer >= 400.
 */
export async function api(path, { method = "GET", json, body, signal, expect401 = false } = {}) {
  const init = { method, signal, headers: { Accept: "application/json" } };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  } else if (body !== undefined) {
    init.body = body;
  }
  let response;
  try {
    response = await fetch(`vapi/${path}`, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "network", "The server cannot be reached. Check that Visionatrix is running.");
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const code = data?.error ?? `http_${response.status}`;
    const message = data?.message ?? `${method} /vapi/${path} answered ${response.status} ${response.statusText}`;
    const error = new ApiError(response.status, code, message, data?.details ?? null);
    if (response.status === 401 && !expect401 && onUnauthorized) {
      error.handled = true;
      onUnauthorized(error);
    }
    throw error;
  }
  return data;
}

/** Encodes one path segment (a flow name, a worker id). */
export function segment(value) {
  return encodeURIComponent(String(value));
}
