"""V3 nodes (``comfy_api.latest``) and node-expansion helpers (``comfy_execution.graph_utils``): our stand-ins,
registered under those names by :func:`visionatrix.nodes.comfy_compat.install`, and the loader of a pack's
``comfy_entrypoint``."""
