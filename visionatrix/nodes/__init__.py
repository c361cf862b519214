"""Node registry, the context handed to running nodes, and the ComfyUI compatibility layer."""
