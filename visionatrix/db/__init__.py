"""The database: engine factory (``engine``), column types (``types``), tables (``tables``) and Alembic
migrations (``migrate``). Imports nothing above it and does nothing at import time."""
