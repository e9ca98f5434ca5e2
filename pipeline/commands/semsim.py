"""`flaudit semsim train|score|correlate|import|export`: train, apply and validate SemSim."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

from flaudit.errors import FlauditError
from flaudit.fields import flag
from pipeline.commands.options import add_threads_option
from semsim.config import CorrelateConfig, ScoreConfig, TrainConfig


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "semsim",
        help="train, score with and validate SemSim, the human-aligned leakage metric",
        description="SemSim (Sun et al., NeurIPS 2023): a triplet-trained embedding whose distance tracks human recognition of reconstructions.",
    )
    sub = parser.add_subparsers(dest="semsim_command", metavar="SUBCOMMAND", required=True)

    train = sub.add_parser("train", help="train a SemSim checkpoint from annotations (JSON Lines) and/or the authors' release layout")
    train.add_argument("--annotations", action="append", default=[], metavar="FILE", help="annotation JSON Lines file (repeatable)")
    train.add_argument("--release", action="append", default=[], metavar="DIR", help="SemSim release folder holding train_with_ori/ (repeatable)")
    train.add_argument("--out", default="semsim.pt", help="checkpoint to write (default: semsim.pt)")
    train.add_argument("--exclude", action="append", default=[], metavar="FIELD=VALUE", help="drop annotations whose FIELD equals VALUE, e.g. attack=dlg (leave-one-out)")
    train.add_argument("--annotator", action="append", default=[], help="keep only these annotators (repeatable; e.g. oracle)")
    for name in ("backbone", "width", "input_size", "pretrained", "epochs", "batch_size", "lr", "step_size", "val_fraction", "seed"):
        # Each flag sets the TrainConfig key of its name, with its declaration and default.
        train.add_argument("--" + name.replace("_", "-"), **flag(TrainConfig, name, default=getattr(TrainConfig, name)))
    train.add_argument("--device", default="auto")
    add_threads_option(train)
    train.set_defaults(func=_train)

    score = sub.add_parser("score", help="SemSim distance of every {i}_{label}_ori / _rec pair (lower = more leakage)")
    score.add_argument("ori_dir", metavar="ORI_DIR")
    score.add_argument("rec_dir", metavar="REC_DIR")
    score.add_argument("--checkpoint", required=True, help="SemSim checkpoint from `flaudit semsim train`")
    score.add_argument("--out", default=None, help="write the per-pair distances as CSV here (default: print)")
    score.add_argument("--batch-size", **flag(ScoreConfig, "batch_size", default=ScoreConfig.batch_size))
    score.add_argument("--device", default="auto")
    add_threads_option(score)
    score.set_defaults(func=_score)

    corr = sub.add_parser("correlate", help="Spearman/Kendall of per-variant metric values against the recognition rate")
    corr.add_argument("table", metavar="TABLE", help="CSV or JSON Lines, one row per model variant")
    corr.add_argument("--target", default="recognition_rate", help="recognition-rate column (default: recognition_rate)")
    corr.add_argument("--metrics", default=None, help="comma-separated metric columns (default: every numeric column)")
    corr.add_argument("--group", default="dataset", help="column giving one table per value (default: dataset)")
    for name in ("n_boot", "confidence", "seed"):
        corr.add_argument("--" + name.replace("_", "-"), **flag(CorrelateConfig, name, default=getattr(CorrelateConfig, name)))
    corr.add_argument("--out", default=None, help="also write the markdown tables here")
    corr.set_defaults(func=_correlate)

    imp = sub.add_parser("import", help="convert the authors' release layout to an annotation JSON Lines file")
    imp.add_argument("release", metavar="RELEASE_DIR")
    imp.add_argument("--out", required=True, help="annotation file to write")
    imp.add_argument("--dataset", default="semsim-release")
    imp.add_argument("--identity", action="store_true", help="the judgements are same/different identity")
    imp.set_defaults(func=_import)

    exp = sub.add_parser("export", help="write annotations in the authors' release layout (train_with_ori/N, -N)")
    exp.add_argument("--annotations", action="append", required=True, metavar="FILE")
    exp.add_argument("--out", required=True, metavar="DIR")
    exp.add_argument("--overwrite", action="store_true")
    exp.set_defaults(func=_export)


def _report_problems(problems: object) -> None:
    problems = list(problems)  # type: ignore[call-overload]
    if not problems:
        return
    print(f"flaudit: warning: {len(problems)} input(s) skipped:", file=sys.stderr)
    for problem in problems[:50]:
        print(f"  {problem}", file=sys.stderr)
    if len(problems) > 50:
        print(f"  ... and {len(problems) - 50} more", file=sys.stderr)


def _load_all(files: list[str], releases: list[str]) -> tuple[list, list[str]]:
    from semsim.data import read_annotations, read_release

    annotations, extras, problems = [], [], []
    for file in files:
        result = read_annotations(file)
        annotations += result.annotations
        problems += result.problems
    for release in releases:
        result = read_release(release)
        annotations += result.annotations
        extras += result.extra_negatives
        problems += result.problems
    _report_problems(problems)
    return annotations, extras


def _train(args: argparse.Namespace) -> int:
    from flaudit.threads import configure_threads
    from semsim.train import train_semsim

    configure_threads(getattr(args, "threads", None))
    if not args.annotations and not args.release:
        raise FlauditError("give --annotations FILE and/or --release DIR to train on")
    annotations, extras = _load_all(args.annotations, args.release)
    for rule in args.exclude:
        field, sep, value = rule.partition("=")
        if not sep or field not in ("dataset", "variant", "attack", "annotator", "original"):
            raise FlauditError(f"--exclude {rule!r}: use FIELD=VALUE with FIELD one of dataset, variant, attack, annotator, original")
        annotations = [a for a in annotations if str(getattr(a, field)) != value]
    if args.annotator:
        annotations = [a for a in annotations if a.annotator in set(args.annotator)]
    config = TrainConfig(
        backbone=args.backbone,
        width=args.width,
        input_size=args.input_size,
        pretrained=args.pretrained,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        step_size=args.step_size,
        val_fraction=args.val_fraction,
        seed=args.seed,
        device=args.device,
    )
    result = train_semsim(annotations, config=config, extra_negatives=extras, out=args.out)
    info = result.checkpoint["info"]
    last = result.history[-1]
    val = f", val loss {last['val_loss']:.4f}, val accuracy {last['val_accuracy']:.3f}" if "val_loss" in last else ", no validation triplets"
    print(
        f"trained {args.backbone} ({result.checkpoint['init']} init) on {info['train_triplets']} triplets from "
        f"{info['train_originals']} originals ({info['val_originals']} held out): final train loss {last['train_loss']:.4f}{val}; "
        f"{info['wall_time_s']:.1f} s -> {result.path}"
    )
    return 0


def _score(args: argparse.Namespace) -> int:
    from flaudit.threads import configure_threads
    from semsim.score import pair_by_name, semsim

    configure_threads(getattr(args, "threads", None))
    pairs, problems = pair_by_name(args.ori_dir, args.rec_dir)
    _report_problems(problems)
    if not pairs:
        raise FlauditError(f"no {{i}}_{{label}}_ori / _rec pair matched between {args.ori_dir} and {args.rec_dir}")
    distances = semsim([p.original for p in pairs], [p.reconstruction for p in pairs], args.checkpoint, batch_size=args.batch_size, device=args.device)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["key", "original", "reconstruction", "semsim"])
    for pair, value in zip(pairs, distances.tolist()):
        writer.writerow([pair.key, pair.original.name, pair.reconstruction.name, f"{value:.6f}"])
    if args.out:
        from flaudit.io import atomic_write_text

        atomic_write_text(args.out, buffer.getvalue())
    else:
        sys.stdout.write(buffer.getvalue())
    best = int(distances.argmin())
    print(f"semsim: {len(pairs)} pairs, mean {distances.mean():.4f}, best (most leaking) {distances[best]:.4f} ({pairs[best].key}); lower = more leakage", file=sys.stderr if not args.out else sys.stdout)
    return 0


def _correlate(args: argparse.Namespace) -> int:
    from semsim.correlate import correlate_rows, markdown_table, read_table

    rows = read_table(args.table)
    metrics = [m.strip() for m in args.metrics.split(",")] if args.metrics else None
    results = correlate_rows(rows, target=args.target, metrics=metrics, group=args.group, n_boot=args.n_boot, confidence=args.confidence, seed=args.seed)
    text = "\n".join(markdown_table(rs, confidence=args.confidence, title=f"{name}: metric vs {args.target} ({rs[0].n if rs else 0} variants)") for name, rs in results.items())
    print(text)
    if args.out:
        from flaudit.io import atomic_write_text

        atomic_write_text(args.out, text)
    return 0


def _import(args: argparse.Namespace) -> int:
    from semsim.data import check_output_file, read_release, write_annotations

    check_output_file(args.out)  # before reading a release of thousands of images
    result = read_release(args.release, dataset=args.dataset, identity=args.identity)
    _report_problems(result.problems)
    write_annotations(args.out, result.annotations)
    print(f"{len(result.annotations)} annotations of {len({a.original for a in result.annotations})} originals -> {args.out}; {len(result.extra_negatives)} extra negatives in others/")
    return 0


def _export(args: argparse.Namespace) -> int:
    from semsim.data import write_release

    annotations, _ = _load_all(args.annotations, [])
    folder = write_release(Path(args.out), annotations, overwrite=args.overwrite)
    print(f"{len(annotations)} annotations -> {folder}")
    return 0
