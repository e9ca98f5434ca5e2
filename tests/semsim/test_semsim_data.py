"""Annotation files and the SemSim release layout."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from flaudit.errors import DatasetUnavailableError
from semsim.data import Annotation, read_annotations, read_release, recognition_rates, save_image, write_annotations, write_release


def _digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _content(annotations) -> set[tuple[str, str, bool]]:  # type: ignore[no-untyped-def]
    return {(_digest(a.original), _digest(a.reconstruction), a.recognisable) for a in annotations}


def test_jsonl_round_trip(tmp_path: Path, synthetic: list[Annotation]) -> None:
    path = write_annotations(tmp_path / "a.jsonl", synthetic)
    result = read_annotations(path)
    assert result.problems == ()
    assert list(result.annotations) == synthetic
    assert synthetic[0].judgement == "recognisable"
    assert Annotation("o", "r", "lfw", "v", "a", False, identity=True).judgement == "different"


def test_jsonl_malformed_lines_and_missing_files_are_reported(tmp_path: Path, synthetic: list[Annotation]) -> None:
    path = tmp_path / "a.jsonl"
    write_annotations(path, synthetic)
    missing = Annotation(str(tmp_path / "nope_ori.png"), synthetic[0].reconstruction, "synthetic", "v", "dlg", True)
    broken = tmp_path / "broken_rec.png"
    broken.write_bytes(b"not a png")
    unreadable = Annotation(synthetic[0].original, str(broken), "synthetic", "v", "dlg", False)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("{not json\n")
        handle.write(json.dumps({"original": "x"}) + "\n")
        handle.write(json.dumps(missing.to_dict()) + "\n")
        handle.write(json.dumps(unreadable.to_dict()) + "\n")
    result = read_annotations(path)
    assert len(result.annotations) == len(synthetic)
    text = "\n".join(map(str, result.problems))
    assert len(result.problems) == 4
    assert f"{path}:{len(synthetic) + 1}" in text and "malformed" in text
    assert "nope_ori.png: file is missing" in text
    assert "broken_rec.png: unreadable image" in text


def test_words_accepted_for_judgement() -> None:
    record = Annotation.from_dict({"original": "o", "reconstruction": "r", "dataset": "d", "variant": "v", "attack": "a", "recognisable": "same"})
    assert record.recognisable is True
    with pytest.raises(ValueError):
        Annotation.from_dict({"original": "o", "reconstruction": "r", "dataset": "d", "variant": "v", "attack": "a", "recognisable": "maybe"})


def _make_release(root: Path) -> None:
    import torch

    g = torch.Generator().manual_seed(1)
    for n in (3, 7, 11):
        save_image(root / "train_with_ori" / str(n) / f"{n}_{n % 5}_ori.png", torch.rand(3, 8, 8, generator=g))
        save_image(root / "train_with_ori" / str(n) / f"a{n}_rec.png", torch.rand(3, 8, 8, generator=g))
        save_image(root / "train_with_ori" / str(n) / f"b{n}_rec.png", torch.rand(3, 8, 8, generator=g))
    for n in (3, 11):
        save_image(root / "train_with_ori" / f"-{n}" / f"c{n}_rec.png", torch.rand(3, 8, 8, generator=g))
    save_image(root / "others" / "x.png", torch.rand(3, 8, 8, generator=g))


def test_release_import(tmp_path: Path) -> None:
    _make_release(tmp_path)
    result = read_release(tmp_path)
    assert result.problems == ()
    assert len(result.annotations) == 8
    assert sum(a.recognisable for a in result.annotations) == 6
    assert len({a.original for a in result.annotations}) == 3
    assert all(a.original.endswith("_ori.png") and a.annotator == "release" for a in result.annotations)
    negatives = [a for a in result.annotations if not a.recognisable]
    assert {Path(a.original).parent.name for a in negatives} == {"3", "11"}
    assert [Path(e).name for e in result.extra_negatives] == ["x.png"]
    # Pointing at train_with_ori/ itself works too.
    assert len(read_release(tmp_path / "train_with_ori").annotations) == 8


def test_release_round_trip(tmp_path: Path) -> None:
    _make_release(tmp_path / "a")
    first = read_release(tmp_path / "a")
    write_release(tmp_path / "b", first.annotations, extra_negatives=first.extra_negatives)
    second = read_release(tmp_path / "b")
    assert second.problems == ()
    assert _content(second.annotations) == _content(first.annotations)
    assert len(second.annotations) == len(first.annotations)
    # Same tree, file for file.
    tree = lambda root: sorted(str(p.relative_to(root)) for p in root.rglob("*.png"))  # noqa: E731
    assert tree(tmp_path / "a") == tree(tmp_path / "b")


def test_export_of_generated_annotations_round_trips(tmp_path: Path, synthetic: list[Annotation]) -> None:
    # Reconstructions of several variants share a file name: export must keep them all apart.
    write_release(tmp_path / "out", synthetic)
    back = read_release(tmp_path / "out")
    assert back.problems == ()
    assert _content(back.annotations) == _content(synthetic)
    assert len(back.annotations) == len(synthetic)
    assert recognition_rates(back.annotations, key="dataset") == {"semsim-release": 0.5}


def test_release_malformed_inputs_reported_and_rest_loads(tmp_path: Path) -> None:
    _make_release(tmp_path)
    folder = tmp_path / "train_with_ori"
    (folder / "7" / "7_2_ori.png").unlink()  # folder with no original
    (folder / "3" / "a3_rec.png").write_bytes(b"\x89PNG broken")  # unreadable image
    save_image(folder / "-20" / "z_rec.png", __import__("torch").rand(3, 8, 8))  # -N without N
    (folder / "junk").mkdir()
    result = read_release(tmp_path)
    text = "\n".join(map(str, result.problems))
    assert f"{folder / '7'}: folder has no original" in text
    assert f"{folder / '3' / 'a3_rec.png'}: unreadable image" in text
    assert f"{folder / '-20'}: no original" in text
    assert f"{folder / 'junk'}: folder name" in text
    # Still loaded: 3 (b3 + c3) and 11 (a, b, c).
    assert len(result.annotations) == 5
    assert len(result.problems) == 4


def test_release_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailableError, match="train_with_ori"):
        read_release(tmp_path)
