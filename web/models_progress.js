// Model downloads as people read them: a progress bar (role=progressbar, aria-valuenow) with its line of text
// ("1.2 MB of 4 MB · 300 KB/s · 8 s left"), used by the Models page rows and the flow cards.

import { h } from "./dom.js";
import { formatBytes } from "./format.js";

/** Download states that are still under way (the others have ended). */
export const ACTIVE_STATES = new Set(["queued", "downloading", "verifying"]);

const STATE_TEXT = { queued: "Queued", downloading: "Downloading", verifying: "Verifying", installed: "Installed",
  failed: "Failed", cancelled: "Cancelled" };

/** Is this `model_progress` (or a Model's `progress`) still running? */
export function isActive(progress) {
  return Boolean(progress) && ACTIVE_STATES.has(progress.state);
}

/** 90 -> "1 min 30 s left"; null -> "". */
function formatEta(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "";
  const whole = Math.max(0, Math.round(seconds));
  if (whole < 60) return `${whole} s left`;
  if (whole < 3600) return `${Math.floor(whole / 60)} min ${whole % 60} s left`;
  return `${Math.floor(whole / 3600)} h ${Math.round((whole % 3600) / 60)} min left`;
}

/** The percentage of `done` in `total` (0–100, whole); null when the total is unknown. */
export function percentOf(done, total) {
  if (!total) return null;
  return Math.max(0, Math.min(100, Math.floor((100 * (done ?? 0)) / total)));
}

/** "Downloading: 1.2 MB of 4 MB · 300 KB/s · 8 s left" for one download. */
export function describeProgress(progress) {
  const parts = [];
  const state = STATE_TEXT[progress.state] ?? progress.state;
  if (progress.bytes_total) parts.push(`${formatBytes(progress.bytes_done)} of ${formatBytes(progress.bytes_total)}`);
  else if (progress.bytes_done) parts.push(formatBytes(progress.bytes_done));
  if (progress.state === "downloading") {
    if (progress.speed_bps) parts.push(`${formatBytes(progress.speed_bps)}/s`);
    const eta = formatEta(progress.eta_s);
    if (eta) parts.push(eta);
  }
  return parts.length ? `${state}: ${parts.join(" · ")}` : state;
}

/** A progress bar named `label` ("Download of 4x-UltraSharp"); fill it with `setProgress`. */
export function progressBar(label) {
  const fill = h("span", { class: "meter-fill" });
  const bar = h("div", { class: "meter", role: "progressbar", "aria-label": label, "aria-valuemin": 0,
    "aria-valuemax": 100 }, fill);
  const text = h("span", { class: "meter-text small" });
  return h("div", { class: "meter-line" }, bar, text);
}

/**
 * Shows `done` of `total` bytes in a bar made by `progressBar`, with `text` beside it. An unknown total leaves
 * aria-valuenow out (an indeterminate bar) and `text` says what is known.
 */
export function setProgress(line, done, total, text) {
  const bar = line.querySelector("[role=progressbar]");
  const percent = percentOf(done, total);
  if (percent === null) {
    bar.removeAttribute("aria-valuenow");
    bar.dataset.indeterminate = "";
  } else {
    bar.setAttribute("aria-valuenow", String(percent));
    delete bar.dataset.indeterminate;
  }
  bar.setAttribute("aria-valuetext", text);
  bar.firstElementChild.style.width = `${percent ?? 0}%`;
  line.querySelector(".meter-text").textContent = text;
}
