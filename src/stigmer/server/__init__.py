"""The stigmer API server: FastAPI over the store, on 127.0.0.1 only."""
