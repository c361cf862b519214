// One WebSocket to /vapi/events for the whole page: pushed task, worker and flow events; reconnects with backoff.

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 10_000;

/**
 * `subscribe(handler)` gets every event (`{type, ...}`); `onResync(handler)` runs after a reconnect, when events
 * may have been missed and a page should read its data again. `onState` is told "connecting", "live" or
 * "reconnecting".
 */
export class EventSocket {
  constructor(url, { onState = () => {} } = {}) {
    this.url = url;
    this.onState = onState;
    this.handlers = new Set();
    this.resyncHandlers = new Set();
    this.delayMs = FIRST_DELAY_MS;
    this.everSubscribed = false;
    this.socket = null;
    this.timer = null;
  }

  start() {
    this.onState(this.everSubscribed ? "reconnecting" : "connecting");
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.addEventListener("message", (message) => this.receive(message.data));
    socket.addEventListener("close", () => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.onState("reconnecting");
      this.timer = setTimeout(() => this.start(), this.delayMs);
      this.delayMs = Math.min(this.delayMs * 2, MAX_DELAY_MS);
    });
  }

  /** Closes the socket for good (signed out); `start()` opens a new one. */
  stop() {
    clearTimeout(this.timer);
    const socket = this.socket;
    this.socket = null;
    socket?.close();
    this.delayMs = FIRST_DELAY_MS;
    this.everSubscribed = false;
  }

  receive(data) {
    let event;
    try {
      event = JSON.parse(data);
    } catch {
      return;  // not ours to read
    }
    if (event.type === "subscribed") {
      this.delayMs = FIRST_DELAY_MS;
      this.onState("live");
      const resync = this.everSubscribed;
      this.everSubscribed = true;
      if (resync) for (const handler of this.resyncHandlers) handler();
      return;
    }
    for (const handler of this.handlers) handler(event);
  }

  subscribe(handler) {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  onResync(handler) {
    this.resyncHandlers.add(handler);
    return () => this.resyncHandlers.delete(handler);
  }
}

/** ws(s)://<this page's folder>/vapi/events */
export function eventsUrl() {
  const url = new URL("vapi/events", document.baseURI);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

/** Runs `fn` once calls have stopped for `delayMs` (a burst of worker reports -> one refetch). */
export function debounce(fn, delayMs) {
  let timer = null;
  const debounced = () => {
    clearTimeout(timer);
    timer = setTimeout(fn, delayMs);
  };
  debounced.cancel = () => clearTimeout(timer);
  return debounced;
}
