// Visionatrix's extension of the ComfyUI graph editor: `comfy/?vix_flow=<name>` opens that installed flow.
// The server lists this file in /extensions; the editor imports it at boot.
import { app } from "../../scripts/app.js";

async function openRequestedFlow() {
  const url = new URL(window.location.href);
  const name = url.searchParams.get("vix_flow");
  if (name === null) return;
  url.searchParams.delete("vix_flow");
  window.history.replaceState(window.history.state, "", url);  // a reload keeps the user's edits, not the flow
  // The editor lives at <base>/comfy/; our API at <base>/vapi/ (a reverse proxy's sub-path survives). The server
  // judges the name: an unknown one is a 404 whose message the toast shows.
  const response = await fetch(new URL(`../vapi/flows/${encodeURIComponent(name)}/graph`, url));
  if (!response.ok) {
    const problem = await response.json().catch(() => ({}));
    app.extensionManager?.toast?.add({ severity: "error", summary: "Visionatrix",
                                       detail: problem.message || `Flow ${name}: HTTP ${response.status}` });
    return;
  }
  await app.loadApiJson(await response.json(), `${name}.json`);
}

app.registerExtension({
  name: "visionatrix.OpenFlow",
  async setup() {
    try {
      await openRequestedFlow();
    } catch (error) {
      console.warn("Visionatrix: could not open the flow", error);
    }
  },
});
