"""HTTP adapter: FastAPI app, versioned under /v1; OpenAPI is the contract."""
