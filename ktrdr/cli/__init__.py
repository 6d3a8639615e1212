"""The `ktrdr` command-line interface (thin Click layer over importable core modules)."""
