"""The node on one machine: ``radrouter up`` supervises every process and an embedded redis-server."""
