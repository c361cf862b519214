"""The graph executor: validation, scheduling, caching and device threads (see README.md beside this file)."""
