"""Sub-commands of `flaudit`, one module each (see pipeline/cli.py)."""
