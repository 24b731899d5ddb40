"""The HTTP API (versioned under /v1) and the dashboard, served by one FastAPI app."""
