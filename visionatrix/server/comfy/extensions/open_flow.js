// Visionatrix's extension of the ComfyUI graph editor: `comfy/?vix_flow=<name>` opens that installed flow.
// The server lists this file in /extensions; the editor imports it at boot.
import { app } from "../../scripts/app.js";

const FLOW_NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/;

async function openRequestedFlow() {
  const url = new URL(window.location.href);
  const name = url.searchParams.get("vix_flow");
  if (name === null) return;
  url.searchParams.delete("vix_flow");
  window.history.replaceState(window.history.state, "", url);  // a reload keeps the user's edits, not the flow
  if (!FLOW_NAME.test(name)) {
    app.extensionManager?.toast?.add({ severity: "error", summary: "Visionatrix", detail: `Not a flow name: ${name}` });
    return;
  }
  // The editor lives at <base>/comfy/; our API at <base>/vapi/ (a reverse proxy's sub-path survives).
  const response = await fetch(new URL(`../vapi/flows/${name}/graph`, url));
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
