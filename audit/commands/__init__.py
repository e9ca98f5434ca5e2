"""Sub-commands of `flaudit`, one module each (see audit/cli.py)."""
