// What the UI derives from a worker record (tolerating servers that do not send `flows` or `state` yet).

/** The flows the worker takes: `flows` when the server sends it, else installed ∩ allowed. */
export function flowsOf(worker) {
  if (Array.isArray(worker.flows)) return worker.flows;
  const installed = worker.installed_flows ?? [];
  return worker.allowed_flows ? installed.filter((name) => worker.allowed_flows.includes(name)) : installed;
}

/** "idle", "busy" or "offline"; from `current_task_id` when the server sends no `state`. */
export function stateOf(worker) {
  return worker.state ?? (worker.current_task_id ? "busy" : "idle");
}

/** The workers that take tasks of `flowName`. */
export function workersFor(workers, flowName) {
  return workers.filter((worker) => flowsOf(worker).includes(flowName));
}
