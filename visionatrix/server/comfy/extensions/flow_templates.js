// Visionatrix's extension of the ComfyUI graph editor: the Templates dialog opens our flows as their API graphs.
// A flow's template (/api/workflow_templates/visionatrix/<name>.json) is a UI-format workflow with no nodes that
// carries the flow's API graph in extra.visionatrix; any load of such a workflow opens that graph instead.
import { app } from "../../scripts/app.js";

function flowOf(graphData) {
  const flow = graphData?.extra?.visionatrix;
  return flow && typeof flow === "object" && flow.api_graph && typeof flow.api_graph === "object" ? flow : null;
}

app.registerExtension({
  name: "visionatrix.FlowTemplates",
  async init() {
    const loadGraphData = app.loadGraphData.bind(app);
    app.loadGraphData = async (graphData, ...rest) => {
      const flow = flowOf(graphData);
      if (flow === null) return loadGraphData(graphData, ...rest);
      await app.loadApiJson(flow.api_graph, `${flow.flow}.json`);
      return true;
    };
  },
});
