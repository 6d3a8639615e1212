"""An instance's compose stack: the one place `docker compose` argv is built and run, and the
typed seam the core reaches Docker through.

May import: base, slots, home, engine, instances.
"""
