"""`flaudit annotate [export|stats] RUN_DIR...`: the annotation page, its answers as SemSim's
annotations, and how far people agree with each other and with the oracle (`semsim.annotate`).

One command with an optional first word rather than three sub-commands: the page is what a
person starts most (`flaudit annotate runs/quickstart`), export and stats read what it stored.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from flaudit.errors import FlauditError
from flaudit.fields import flag
from semsim.config import AnnotateConfig

if TYPE_CHECKING:
    from fl_sim.run_store import RunStore
    from semsim.annotate.items import Source

ACTIONS = ("export", "stats")
# Which options belong to which action: one given to another action is an error, not ignored.
_OPTIONS = {
    "serve": ("port", "mode", "annotators", "host", "allow_remote"),
    "export": ("out", "release", "majority", "overwrite"),
    "stats": ("json", "no_oracle", "oracle_cache", "device"),
}


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "annotate", help="people judge reconstructions on a local web page; export and agreement stats",
        usage="flaudit annotate [export|stats] RUN_DIR [RUN_DIR ...] [options]",
        description="flaudit annotate RUN_DIR...: serve a page (http://127.0.0.1:8765/) where people judge the audit's "
        "reconstructions one at a time; answers go to RUN_DIR/annotations/answers.sqlite as they are given, and a "
        "restarted server resumes. flaudit annotate export RUN_DIR... --out FILE: SemSim's annotation JSON Lines (and "
        "--release DIR, the release folder layout) for `flaudit semsim train`. flaudit annotate stats RUN_DIR...: answers "
        "per person, agreement between people (percent, Cohen's and Fleiss' kappa) and with the oracle.",
    )
    parser.add_argument("runs", nargs="+", metavar="[export|stats] RUN_DIR", help="scored run directories (`flaudit run`, `flaudit audit`)")
    serve = parser.add_argument_group("serving the page")
    serve.add_argument("--port", **flag(AnnotateConfig, "port", default=None, help=f"TCP port (default {AnnotateConfig.port})"))
    serve.add_argument("--mode", **flag(AnnotateConfig, "mode", default=None))
    serve.add_argument("--annotators", **flag(AnnotateConfig, "annotators", default=None, metavar="N",
                                              help=f"different people who judge each item (default {AnnotateConfig.annotators})"))
    serve.add_argument("--host", default=None, help="address to serve on (default 127.0.0.1; another needs --allow-remote)")
    serve.add_argument("--allow-remote", action="store_true", default=None,
                       help="serve on a non-loopback --host: anyone who reaches it sees the images and can answer")
    export = parser.add_argument_group("export")
    export.add_argument("--out", type=Path, default=None, metavar="FILE", help="annotation JSON Lines to write (required)")
    export.add_argument("--release", type=Path, default=None, metavar="DIR",
                        help="also write the release layout (train_with_ori/N, -N) here, one majority label per item")
    export.add_argument("--majority", action="store_true", default=None,
                        help="one record per item, its people's majority (annotator 'majority'), instead of one per answer")
    export.add_argument("--overwrite", action="store_true", default=None, help="replace a non-empty --release folder")
    stats = parser.add_argument_group("stats")
    stats.add_argument("--json", action="store_true", default=None, help="print the figures as JSON")
    stats.add_argument("--no-oracle", action="store_true", default=None, help="skip the comparison with the machine annotator")
    stats.add_argument("--oracle-cache", type=Path, default=None, help="folder the oracle is cached in (default RUN_DIR/cache)")
    stats.add_argument("--device", default=None, help="the oracle's device: auto, cpu or cuda[:N] (default auto)")
    parser.set_defaults(func=_annotate)


def _annotate(args: argparse.Namespace) -> int:
    action = args.runs[0] if args.runs[0] in ACTIONS else "serve"
    runs = args.runs[1:] if action != "serve" else args.runs
    misplaced = [name for other, names in _OPTIONS.items() if other != action for name in names if getattr(args, name) is not None]
    if misplaced:
        shown = ", ".join("--" + name.replace("_", "-") for name in misplaced)
        raise FlauditError(f"flaudit annotate {action if action != 'serve' else ''}: {shown} belong(s) to another action; "
                           f"this one takes {', '.join('--' + n.replace('_', '-') for n in _OPTIONS[action])}")
    if not runs:
        raise FlauditError(f"flaudit annotate {action}: give at least one RUN_DIR")
    stores = _stores(runs)
    if action == "export":
        return _export(stores, args)
    if action == "stats":
        return _stats(stores, args)
    return _serve(stores, args)


def _stores(runs: list[str]) -> list[RunStore]:
    from fl_sim.run_store import RunStore

    stores = []
    for run in runs:
        store = RunStore(Path(run))
        if not store.manifest_path.is_file():
            raise FlauditError(f"{store.root}: not a run directory (no manifest.json); run `flaudit run SCENARIO` first")
        stores.append(store)
    if len({store.root.resolve() for store in stores}) != len(stores):
        raise FlauditError("the same RUN_DIR is given twice")
    return stores


def _serve(stores: list[RunStore], args: argparse.Namespace) -> int:
    from pipeline.annotators import annotation_source
    from semsim.annotate.server import check_host, serve
    from semsim.annotate.session import Session

    host = args.host or "127.0.0.1"
    check_host(host, allow_remote=bool(args.allow_remote))  # before loading anything
    sources = [annotation_source(store, mode=args.mode) for store in stores]
    _warn([problem for source in sources for problem in source.problems])
    if not any(source.items for source in sources):
        raise FlauditError(f"no scored pairs to judge in {', '.join(str(s.root) for s in stores)}; score them with `flaudit audit`")
    session = Session(sources, capacity=args.annotators or AnnotateConfig.annotators)
    serve(session, host=host, port=args.port or AnnotateConfig.port, allow_remote=bool(args.allow_remote))
    return 0


def _answered(stores: list[RunStore]) -> list[Source]:
    """The items of every mode each run holds answers in (a run may have been judged both ways)."""
    from pipeline.annotators import annotation_database, annotation_source
    from semsim.annotate.items import item_mode
    from semsim.annotate.store import AnswerStore

    sources = []
    for store in stores:
        database = annotation_database(store)
        if not database.is_file():
            raise FlauditError(f"{database}: missing; nobody has annotated {store.root} yet (`flaudit annotate {store.root}`)")
        modes = sorted({item_mode(answer.item) for answer in AnswerStore(database).answers()})
        sources += [annotation_source(store, mode=mode) for mode in modes]  # type: ignore[arg-type]
    return sources


def _export(stores: list[RunStore], args: argparse.Namespace) -> int:
    from semsim.annotate.report import annotations, collect, majority_annotations
    from semsim.data import write_annotations, write_release

    if args.out is None:
        raise FlauditError("flaudit annotate export: give --out FILE (the annotation JSON Lines to write)")
    judged, notes = collect(_answered(stores))
    _warn(notes)
    if not judged:
        raise FlauditError(f"no answers to export in {', '.join(str(s.root) for s in stores)}")
    majorities, ties = majority_annotations(judged)
    records = majorities if args.majority else annotations(judged)
    write_annotations(args.out, records)
    what = f"{len(records)} majority labels ({ties} tied items left out)" if args.majority else f"{len(records)} answers"
    print(f"{what} of {len({j.answer.annotator for j in judged})} people -> {args.out}")
    if args.release is not None:
        folder = write_release(args.release, majorities, overwrite=bool(args.overwrite))
        print(f"{len(majorities)} majority labels ({ties} tied items left out) -> {folder}")
    return 0


def _stats(stores: list[RunStore], args: argparse.Namespace) -> int:
    from semsim.annotate.report import agreement_stats, collect, format_stats

    judged, notes = collect(_answered(stores))
    _warn(notes)
    oracle = None if args.no_oracle else _oracle_judgements(stores, judged, args)
    stats = agreement_stats(judged, oracle)
    if args.json:
        print(json.dumps(stats, indent=2, default=str, allow_nan=True))
    else:
        print(format_stats(stats), end="")
    return 0


def _oracle_judgements(stores: list[RunStore], judged: list, args: argparse.Namespace) -> dict | None:
    """The oracle's recognised/not per (run, item), or None (said why) when it cannot be had here."""
    from flaudit.device import resolve_device
    from flaudit.errors import DatasetUnavailableError
    from pipeline.annotators import oracle_for_run
    from semsim.annotate.report import oracle_judgements

    device = resolve_device(args.device or "auto")
    found: dict = {}
    for store in stores:
        items = list({j.item.id: j.item for j in judged if j.source.root == store.root}.values())
        if not items:
            continue
        try:
            oracle = oracle_for_run(store, cache_dir=args.oracle_cache, device=device)
        except (DatasetUnavailableError, FlauditError) as err:
            print(f"oracle unavailable for {store.root}: {err}", file=sys.stderr)
            return None
        found.update({(store.root, item): value for item, value in oracle_judgements(items, oracle).items()})
    return found


def _warn(lines: list[str]) -> None:
    for line in lines[:50]:
        print(f"flaudit: warning: {line}", file=sys.stderr)
    if len(lines) > 50:
        print(f"flaudit: warning: ... and {len(lines) - 50} more", file=sys.stderr)



