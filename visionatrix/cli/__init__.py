"""Command-line interface: ``python -m visionatrix <command>``."""
