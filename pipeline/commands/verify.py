"""`flaudit verify RUN_DIR`: every file of a run checked against manifest.json's SHA-256."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flaudit.errors import FlauditError


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "verify", help="check a run directory against its manifest",
        description="List the files of RUN_DIR that are missing, altered (SHA-256 differs from manifest.json) or "
        "unexpected (not in the manifest). Exit status 1 when any; TensorBoard events, caches and people's answers (annotations/) are not covered.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", type=Path)
    parser.set_defaults(func=_verify)


def _verify(args: argparse.Namespace) -> int:
    from flaudit.rundir import RunDir

    store = RunDir(args.run_dir)
    if not store.manifest_path.is_file():
        raise FlauditError(f"{store.manifest_path}: missing; {store.root} is not a flaudit run directory")
    problems = store.verify()
    for problem in problems:
        print(problem)
    recorded = len(store.manifest_files())
    if problems:
        print(f"{len(problems)} problem(s) in {store.root} ({recorded} files recorded)", file=sys.stderr)
        return 1
    print(f"{store.root}: all {recorded} recorded files match manifest.json")
    return 0
