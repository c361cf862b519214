"""The aiohttp server: ``create_app(services)`` builds the application; see ``docs/api.md`` for the REST API."""
