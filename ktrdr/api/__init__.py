"""The KTRDR backend: FastAPI app (`ktrdr.api.app:app`) serving the v1 API."""
