"""Annotation records, their JSON Lines files, and the SemSim authors' release layout.

An annotation says whether a person (or the machine `oracle`) recognised a reconstruction
as its original. The SemSim release stores the same information as folders::

    ROOT/train_with_ori/N/      the original  *_ori.png  and its recognisable reconstructions
    ROOT/train_with_ori/-N/     the unrecognisable reconstructions of original N
    ROOT/others/                extra negatives (images of no original in the set)

Loading never stops at the first bad file: every problem (missing file, unreadable image,
folder without an original, malformed JSON line) is returned with its path, and whatever
is sound still loads.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from flaudit.errors import DatasetUnavailableError, FlauditError
from flaudit.io import atomic_write_text

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
ORIGINAL_SUFFIX = "_ori"
HUMAN_RELEASE_ANNOTATOR = "release"


@dataclass(frozen=True)
class Annotation:
    """One judgement of one reconstruction.

    Args:
        original: path of the original (ground-truth) image.
        reconstruction: path of the reconstructed image.
        dataset: dataset name (`digits`, `lfw-faces`, `cifar100`, ...).
        variant: the attacked model or model variant (`resnet20/vanilla`, ...).
        attack: the attack that made the reconstruction.
        recognisable: the judgement. For identity datasets (faces) it is "same person".
        annotator: a person's id, `oracle` for the machine annotator, `release` for the
            authors' released human labels.
        time: ISO 8601 time of the judgement ("" when unknown).
        identity: True when the question was "same identity or not" instead of "can you
            recognise the object".
    """

    original: str
    reconstruction: str
    dataset: str
    variant: str
    attack: str
    recognisable: bool
    annotator: str = "oracle"
    time: str = ""
    identity: bool = False

    @property
    def judgement(self) -> str:
        """The judgement in the words the annotator was asked: recognisable/unrecognisable or same/different."""
        if self.identity:
            return "same" if self.recognisable else "different"
        return "recognisable" if self.recognisable else "unrecognisable"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> "Annotation":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown keys {unknown}; allowed: {sorted(known)}")
        values = dict(data)
        # Accept the judgement spelled as words too (a person's annotation tool may write them).
        if "recognisable" in values and isinstance(values["recognisable"], str):
            word = str(values["recognisable"]).lower()
            if word not in _WORDS:
                raise ValueError(f"recognisable={values['recognisable']!r}; use true/false, recognisable/unrecognisable or same/different")
            values["recognisable"] = _WORDS[word]
        for key in ("original", "reconstruction", "dataset", "variant", "attack"):
            if not isinstance(values.get(key), str) or not values.get(key):
                raise ValueError(f"{key!r} must be a non-empty string")
        if not isinstance(values.get("recognisable"), bool):
            raise ValueError("'recognisable' must be true or false")
        return cls(**values)  # type: ignore[arg-type]


_WORDS = {"true": True, "false": False, "recognisable": True, "unrecognisable": False, "same": True, "different": False, "yes": True, "no": False}


@dataclass(frozen=True)
class Problem:
    """A malformed input that was skipped: its path and what is wrong with it."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class LoadResult:
    """What a loader could read, and what it had to skip.

    Args:
        annotations: the sound records.
        extra_negatives: images of no original (the release's `others/`), usable as negatives.
        problems: every skipped input, with its path.
    """

    annotations: tuple[Annotation, ...]
    extra_negatives: tuple[str, ...] = ()
    problems: tuple[Problem, ...] = field(default_factory=tuple)


def now_iso() -> str:
    """The current UTC time, ISO 8601, for `Annotation.time`."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- JSON Lines


def write_annotations(path: str | Path, annotations: Iterable[Annotation]) -> Path:
    """Write annotations as JSON Lines, atomically (a crash never leaves half a file).

    Raises:
        FlauditError: `path` is a folder or cannot be written (the message names it and why).
    """
    path = check_output_file(path)
    lines = [json.dumps(a.to_dict(), sort_keys=True) for a in annotations]
    try:
        return atomic_write_text(path, "".join(line + "\n" for line in lines))
    except OSError as err:
        raise FlauditError(f"{path}: cannot write the annotations there ({err.strerror or err}); choose a writable file path") from None


def check_output_file(path: str | Path) -> Path:
    """`path`, when a file can be written there (checked before any work; the write itself may still fail).

    Raises:
        FlauditError: `path` is a folder, or its folder cannot be created or written to.
    """
    path = Path(path)
    if path.is_dir():
        raise FlauditError(f"{path}: is a folder; give the path of the file to write, e.g. {path / 'annotations.jsonl'}")
    parent = next((p for p in (path.parent, *path.parent.parents) if p.exists()), Path("."))
    if not parent.is_dir():
        raise FlauditError(f"{path}: cannot be created, {parent} is a file and not a folder; choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise FlauditError(f"{path}: cannot be written, {parent} is not writable by this user; choose a writable place")
    return path


def read_annotations(path: str | Path, *, check_files: bool = True) -> LoadResult:
    """Read a JSON Lines annotation file.

    Malformed lines, and (with `check_files`) records whose image files are missing or
    unreadable, are skipped and reported as problems; relative image paths are resolved
    against the file's folder.

    Raises:
        DatasetUnavailableError: the file itself does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetUnavailableError(f"{path}: annotation file not found; write one with `flaudit study` or the annotation tool")
    good: list[Annotation] = []
    problems: list[Problem] = []
    checked: dict[str, str | None] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = Annotation.from_dict(json.loads(line))
        except (json.JSONDecodeError, ValueError, TypeError) as err:
            problems.append(Problem(f"{path}:{number}", f"malformed annotation ({err})"))
            continue
        record = _resolve(record, path.parent)
        if check_files:
            bad = False
            for image in (record.original, record.reconstruction):
                if image not in checked:
                    checked[image] = image_problem(image)
                if checked[image] is not None:
                    problems.append(Problem(image, f"{checked[image]} (line {number} of {path} skipped)"))
                    bad = True
            if bad:
                continue
        good.append(record)
    return LoadResult(tuple(good), (), tuple(problems))


def _resolve(record: Annotation, base: Path) -> Annotation:
    from dataclasses import replace

    def fix(p: str) -> str:
        return p if Path(p).is_absolute() else str(base / p)

    return replace(record, original=fix(record.original), reconstruction=fix(record.reconstruction))


# --------------------------------------------------------------------------- images


def image_problem(path: str | Path) -> str | None:
    """None when `path` is a readable image, else what is wrong ("missing", "unreadable ...")."""
    path = Path(path)
    if not path.is_file():
        return "file is missing"
    try:
        with Image.open(path) as img:
            img.load()
    except Exception as err:  # PIL raises several types for truncated or non-image files
        return f"unreadable image ({type(err).__name__}: {err})"
    return None


def load_image(path: str | Path, *, channels: int = 3) -> torch.Tensor:
    """One image file as a (C, H, W) float tensor in [0, 1].

    Raises:
        FlauditError: the file is missing or not an image (the message names the path).
    """
    problem = image_problem(path)
    if problem is not None:
        raise FlauditError(f"{path}: {problem}")
    with Image.open(path) as img:
        img = img.convert("RGB" if channels == 3 else "L")
        array = np.asarray(img, dtype=np.float32) / 255.0
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def save_image(path: str | Path, image01: torch.Tensor) -> Path:
    """Save a (C, H, W) image in [0, 1] as PNG (8 bit), atomically."""
    import io as _io

    array = (image01.detach().float().clamp(0, 1).cpu() * 255).round().to(torch.uint8)
    array_np = array.permute(1, 2, 0).numpy()
    if array_np.shape[2] == 1:
        array_np = array_np[:, :, 0]
    buffer = _io.BytesIO()
    Image.fromarray(array_np).save(buffer, format="PNG")
    from flaudit.io import atomic_write_bytes

    return atomic_write_bytes(path, buffer.getvalue())


def is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


# --------------------------------------------------------------------------- release layout

_FOLDER = re.compile(r"^(-?)(\d+)$")


def read_release(
    root: str | Path,
    *,
    dataset: str = "semsim-release",
    variant: str = "unknown",
    attack: str = "unknown",
    annotator: str = HUMAN_RELEASE_ANNOTATOR,
    identity: bool = False,
) -> LoadResult:
    """Import the SemSim authors' release layout (see the module docstring).

    `root` may be the folder holding `train_with_ori/` (and `others/`) or `train_with_ori/`
    itself. Every reconstruction in `N/` becomes a recognisable annotation of N's original,
    every one in `-N/` an unrecognisable one. Unreadable images, folders without exactly
    one `*_ori` image, `-N/` folders without a usable `N/`, stray images and folders, and
    symbolic links that lead out of the release (never followed) are reported, and skipped.

    Raises:
        DatasetUnavailableError: `root` has no `train_with_ori/` folder inside it.
        FlauditError: two folders give the same number (`1/` and `01/`): which one is meant is
            not known, so nothing is imported; the message names every such pair.
    """
    root = Path(root)
    folder = root / "train_with_ori"
    if not folder.is_dir():
        if root.name == "train_with_ori" and root.is_dir():
            folder, root = root, root.parent
        else:
            raise DatasetUnavailableError(
                f"{root}: no train_with_ori/ folder; point at the unpacked SemSim release (ROOT/train_with_ori/N/, ROOT/others/)"
            )
    tree = os.path.realpath(root)
    problems: list[Problem] = []
    if _leaves(folder, tree, problems):
        raise DatasetUnavailableError(f"{problems[-1]}; point at the release that holds it")
    numbered = _numbered_folders(folder, tree, problems)
    originals: dict[int, Path] = {}
    positives: dict[int, list[Path]] = {}
    negatives: dict[int, list[Path]] = {}
    for (negative, number), sub in sorted(numbered.items(), key=lambda item: (item[0][1], item[0][0])):
        images = _images(sub, tree, problems)
        origs = [f for f in images if f.stem.endswith(ORIGINAL_SUFFIX)]
        recs = [f for f in images if not f.stem.endswith(ORIGINAL_SUFFIX)]
        if negative:
            # The release keeps originals only in N/; an *_ori image in -N/ is not a reconstruction.
            for orig in origs:
                problems.append(Problem(str(orig), "original (*_ori) inside a -N folder; skipped (originals belong in N/)"))
            negatives[number] = recs
            continue
        if len(origs) != 1:
            what = "no original (*_ori image)" if not origs else f"{len(origs)} originals ({', '.join(f.name for f in origs)})"
            problems.append(Problem(str(sub), f"folder has {what}; its reconstructions are skipped"))
            continue
        originals[number] = origs[0]
        positives[number] = recs
    for number in sorted(set(negatives) - set(originals)):
        if (False, number) in numbered:
            reason = f"no original: {numbered[False, number]} has no usable *_ori image; skipped"
        else:
            reason = f"no original: folder {number}/ with a *_ori image is missing; skipped"
        problems.append(Problem(str(numbered[True, number]), reason))

    annotations: list[Annotation] = []
    for number in sorted(originals):
        for rec, good in [(p, True) for p in positives[number]] + [(p, False) for p in negatives.get(number, [])]:
            annotations.append(
                Annotation(
                    original=str(originals[number]),
                    reconstruction=str(rec),
                    dataset=dataset,
                    variant=variant,
                    attack=attack,
                    recognisable=good,
                    annotator=annotator,
                    identity=identity,
                )
            )
    others = root / "others"
    extras: list[str] = []
    if others.is_dir() and not _leaves(others, tree, problems):
        extras = [str(file) for file in _images(others, tree, problems)]
    return LoadResult(tuple(annotations), tuple(extras), tuple(problems))


def _numbered_folders(folder: Path, tree: str, problems: list[Problem]) -> dict[tuple[bool, int], Path]:
    """train_with_ori/'s N/ and -N/ folders by (negative, N); whatever else is there goes to `problems`.

    Raises:
        FlauditError: two folders give the same (negative, N).
    """
    found: dict[tuple[bool, int], list[Path]] = defaultdict(list)
    for sub in _entries(folder, problems):
        if _leaves(sub, tree, problems):
            continue
        if not sub.is_dir():
            if is_image(sub):
                problems.append(Problem(str(sub), "image outside the N/ and -N/ folders; skipped"))
            continue
        match = _FOLDER.match(sub.name)
        if not match:
            problems.append(Problem(str(sub), "folder name is not N or -N (an integer); skipped"))
            continue
        found[match.group(1) == "-", int(match.group(2))].append(sub)
    clashes = [
        f"{' and '.join(str(p) for p in paths)} all mean folder {'-' if negative else ''}{number}"
        for (negative, number), paths in sorted(found.items(), key=lambda item: (item[0][1], item[0][0])) if len(paths) > 1
    ]
    if clashes:
        raise FlauditError(
            f"{folder}: folders with the same number ({'; '.join(clashes)}); nothing was imported, since which one is "
            f"meant is unknown: rename or remove all but one of each and import again"
        )
    return {key: paths[0] for key, paths in found.items()}


def _images(folder: Path, tree: str, problems: list[Problem]) -> list[Path]:
    """The readable images of one folder of the layout; unreadable ones, sub-folders and links out of the
    release go to `problems` (other files, and hidden ones, are not part of the layout)."""
    images = []
    for entry in _entries(folder, problems):
        if _leaves(entry, tree, problems):
            continue
        if entry.is_dir():
            problems.append(Problem(str(entry), f"a folder inside {folder.name}/ is not part of the layout; skipped"))
            continue
        if not is_image(entry):
            continue
        problem = image_problem(entry)
        if problem is not None:
            problems.append(Problem(str(entry), problem))
            continue
        images.append(entry)
    return images


def _entries(folder: Path, problems: list[Problem]) -> list[Path]:
    """The folder's entries, sorted ([] and a problem when it cannot be listed)."""
    try:
        return sorted(folder.iterdir())
    except OSError as err:
        problems.append(Problem(str(folder), f"cannot list the folder ({err.strerror or err}); skipped"))
        return []


def _leaves(path: Path, tree: str, problems: list[Problem]) -> bool:
    """True, with a problem, when `path` is a symbolic link whose target is outside `tree` (the release, resolved).

    Links are never followed out of the release: a link to a system folder must not be scanned.
    An entry that is not a link lies inside its folder, which was checked the same way.
    """
    if not path.is_symlink():
        return False
    target = os.path.realpath(path)
    if os.path.commonpath([target, tree]) == tree:
        return False
    problems.append(Problem(str(path), f"symbolic link to {target}, outside the release {tree}; not followed"))
    return True


def write_release(
    root: str | Path,
    annotations: Sequence[Annotation],
    *,
    extra_negatives: Sequence[str] = (),
    overwrite: bool = False,
) -> Path:
    """Export annotations to the release layout, copying the image files.

    Originals are numbered by the integer prefix of their file name when it is unique
    (`12_3_ori.png` -> folder 12), else in sorted order; file names are kept where they
    follow the release naming, so export after import reproduces the same tree.

    Returns:
        The `train_with_ori/` folder written.

    Raises:
        FlauditError: the target exists and `overwrite` is False, or an image to copy is missing.
    """
    root = Path(root)
    folder = root / "train_with_ori"
    if folder.exists() and any(folder.iterdir()) and not overwrite:
        raise FlauditError(f"{folder} exists and is not empty; pass overwrite=True (--overwrite) or pick another folder")
    by_original: dict[str, list[Annotation]] = defaultdict(list)
    for record in annotations:
        by_original[record.original].append(record)
    numbers = _number_originals(sorted(by_original))
    for original, number in numbers.items():
        source = Path(original)
        if not source.is_file():
            raise FlauditError(f"{source}: original image is missing; cannot export")
        name = source.name if source.stem.endswith(ORIGINAL_SUFFIX) else f"{number}_{source.stem}{ORIGINAL_SUFFIX}{source.suffix}"
        pos_dir, neg_dir = folder / str(number), folder / f"-{number}"
        pos_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, pos_dir / name)
        used: set[tuple[Path, str]] = {(pos_dir, name)}
        for record in by_original[original]:
            target_dir = pos_dir if record.recognisable else neg_dir
            target_dir.mkdir(parents=True, exist_ok=True)
            rec = Path(record.reconstruction)
            if not rec.is_file():
                raise FlauditError(f"{rec}: reconstruction is missing; cannot export")
            rec_name = rec.name
            if rec.stem.endswith(ORIGINAL_SUFFIX) or (target_dir, rec_name) in used:
                # Reconstructions from different variants often share a name: make it unique and readable.
                stem = f"{record.variant}_{record.attack}_{rec.stem}".replace("/", "-").replace(ORIGINAL_SUFFIX, "_o")
                rec_name = f"{stem}{rec.suffix}"
                k = 1
                while (target_dir, rec_name) in used:
                    rec_name, k = f"{stem}_{k}{rec.suffix}", k + 1
            used.add((target_dir, rec_name))
            shutil.copyfile(rec, target_dir / rec_name)
    if extra_negatives:
        others = root / "others"
        others.mkdir(parents=True, exist_ok=True)
        for extra in extra_negatives:
            shutil.copyfile(extra, others / Path(extra).name)
    return folder


def _number_originals(originals: Sequence[str]) -> dict[str, int]:
    prefixes: dict[str, int | None] = {}
    for original in originals:
        head = Path(original).name.split("_", 1)[0]
        prefixes[original] = int(head) if head.isdigit() else None
    counts: dict[int, int] = defaultdict(int)
    for value in prefixes.values():
        if value is not None:
            counts[value] += 1
    numbers: dict[str, int] = {}
    taken: set[int] = set()
    for original in originals:
        value = prefixes[original]
        if value is not None and counts[value] == 1:
            numbers[original] = value
            taken.add(value)
    next_free = 0
    for original in originals:
        if original in numbers:
            continue
        while next_free in taken:
            next_free += 1
        numbers[original] = next_free
        taken.add(next_free)
    return numbers


def recognition_rates(annotations: Iterable[Annotation], *, key: str = "variant") -> dict[str, float]:
    """Fraction of reconstructions judged recognisable, per `key` (an Annotation field)."""
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for record in annotations:
        group = str(getattr(record, key))
        totals[group][0] += int(record.recognisable)
        totals[group][1] += 1
    return {group: hits / count for group, (hits, count) in sorted(totals.items())}
