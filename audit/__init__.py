"""The audit: scores the leakage of every captured round, and the `flaudit` command line."""
