"""`flaudit doctor`: which metrics, datasets and devices are available on this machine, and why not."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from flaudit.offline import downloads_allowed


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor", help="list available metrics, datasets and devices",
        description="Check which metrics (LPIPS/FID weights), datasets and devices this machine can use, "
        "and for each one that it cannot, what file to provide where.",
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument("--packages", action="store_true", help="only the installed packages (instant: imports none of them)")
    parser.set_defaults(func=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    from audit.availability import availability, package_availability

    items = package_availability() if args.packages else availability()
    if args.json:
        print(json.dumps([asdict(item) for item in items], indent=2))
        return 0
    kind = None
    for item in items:
        if item.kind != kind:
            kind = item.kind
            print(f"\n{kind}s:")
        mark = "ok " if item.available else "-- "
        print(f"  {mark} {item.name:<14} {item.detail}")
    missing = [item for item in items if not item.available and item.kind == "metric"]
    if missing:
        print(f"\n{len(missing)} metric(s) unavailable; runs go on and mark them unavailable in the report.")
    if not downloads_allowed():
        print("FLAUDIT_OFFLINE is set: nothing will be downloaded; provide the files named above.")
    return 0
