"""PostgreSQL access for the backend: connection settings and versioned SQL migrations."""
