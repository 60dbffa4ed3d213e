"""params.yaml: reading it, what it may hold, and the names it may choose from (no torch)."""
