"""Visionatrix: a self-hosted service that runs AI media flows (ComfyUI-format node graphs)."""

__version__ = "0.1.0"
