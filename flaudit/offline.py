"""Whether this process may download weights and datasets.

Set `FLAUDIT_OFFLINE=1` on machines without internet (cluster compute nodes, CI, the test
suite): every download is then skipped at once, and what is not already cached is reported as
unavailable with the file to provide, instead of waiting on a network that will not answer.
`HF_HUB_OFFLINE=1`, the switch many ML tools already honour, means the same.
"""

from __future__ import annotations

import os

_TRUE = {"1", "true", "yes", "on"}


def downloads_allowed() -> bool:
    """False when `FLAUDIT_OFFLINE` (or `HF_HUB_OFFLINE`) is set to 1/true/yes/on."""
    return not any(os.environ.get(name, "").strip().lower() in _TRUE for name in ("FLAUDIT_OFFLINE", "HF_HUB_OFFLINE"))
