"""The HTTP API: Connexion 3 (OpenAPI-first) on Starlette; handlers are thin."""
