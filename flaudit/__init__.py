"""Shared core of flaudit: the exception family, name registries, atomic I/O, progress, device.

Every other package (fl_sim, attacks, audit, semsim, defenses) may import this one; it imports
nothing of theirs.
"""

__version__ = "0.1.0"
