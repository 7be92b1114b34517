"""The HTTP API (Litestar): one module of routes per resource, guards, problem+json errors."""
