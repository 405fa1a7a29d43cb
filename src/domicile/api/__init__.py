"""The HTTP API: FastAPI routes over the gateway; the only place errors become HTTP."""
