"""Importing the SemSim release layout from untrusted folders: links never lead out of the release,
folders that mean the same number are an error naming them, every skipped input is reported, and
`flaudit semsim import --out` to a folder or an unwritable place is one clear message."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flaudit.errors import FlauditError
from pipeline.cli import main
from semsim.data import read_release, save_image

PNG = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))


def _image(path: Path) -> Path:
    return save_image(path, PNG)


def _release(root: Path) -> Path:
    """train_with_ori/1/ (original + 2 reconstructions) and -1/ (1 reconstruction)."""
    folder = root / "train_with_ori"
    _image(folder / "1" / "1_3_ori.png")
    _image(folder / "1" / "a_rec.png")
    _image(folder / "1" / "b_rec.png")
    _image(folder / "-1" / "c_rec.png")
    return folder


def _problems(result) -> str:  # type: ignore[no-untyped-def]
    return "\n".join(map(str, result.problems))


def test_links_out_of_the_release_are_reported_and_not_followed(tmp_path: Path) -> None:
    folder = _release(tmp_path / "release")
    outside = tmp_path / "system"
    _image(outside / "2_0_ori.png")
    _image(outside / "secret_rec.png")
    (folder / "2").symlink_to(outside, target_is_directory=True)  # a folder linked out of the tree
    (folder / "1" / "d_rec.png").symlink_to(outside / "secret_rec.png")  # a file linked out of the tree
    (tmp_path / "release" / "others").symlink_to(outside, target_is_directory=True)

    result = read_release(tmp_path / "release")

    text = _problems(result)
    for link in (folder / "2", folder / "1" / "d_rec.png", tmp_path / "release" / "others"):
        assert f"{link}: symbolic link to {os.path.realpath(link)}, outside the release" in text
    scanned = [a.original for a in result.annotations] + [a.reconstruction for a in result.annotations] + list(result.extra_negatives)
    assert not any(str(outside) in path or "/2/" in path or "d_rec" in path for path in scanned)
    assert sorted(Path(a.reconstruction).name for a in result.annotations) == ["a_rec.png", "b_rec.png", "c_rec.png"]


def test_links_inside_the_release_are_followed(tmp_path: Path) -> None:
    folder = _release(tmp_path / "release")
    _image(tmp_path / "release" / "pool" / "e_rec.png")
    (folder / "1" / "e_rec.png").symlink_to(tmp_path / "release" / "pool" / "e_rec.png")
    result = read_release(tmp_path / "release")
    assert result.problems == ()
    assert "e_rec.png" in {Path(a.reconstruction).name for a in result.annotations}


def test_a_release_reached_through_a_link_is_read_inside_its_own_tree(tmp_path: Path) -> None:
    _release(tmp_path / "real")
    (tmp_path / "alias").symlink_to(tmp_path / "real", target_is_directory=True)
    result = read_release(tmp_path / "alias")
    assert result.problems == () and len(result.annotations) == 3


@pytest.mark.parametrize(("first", "second"), [("1", "01"), ("-1", "-01"), ("0", "000")])
def test_folders_with_the_same_number_are_an_error_naming_both(tmp_path: Path, first: str, second: str) -> None:
    folder = _release(tmp_path)
    for name in (first, second):
        number = name.lstrip("-")
        _image(folder / name / (f"{number}_0_ori.png" if not name.startswith("-") else "z_rec.png"))
        _image(folder / name / f"{name}_rec.png")
    with pytest.raises(FlauditError) as err:
        read_release(tmp_path)
    message = str(err.value)
    listed = sorted([first, second])  # the order the folder lists them in
    assert f"{folder / listed[0]} and {folder / listed[1]} all mean folder {int(first)}" in message
    assert "nothing was imported" in message


def test_negatives_of_a_folder_without_a_usable_original_are_reported(tmp_path: Path) -> None:
    folder = _release(tmp_path)
    (folder / "1" / "1_3_ori.png").write_bytes(b"not a png")
    result = read_release(tmp_path)
    text = _problems(result)
    assert f"{folder / '1' / '1_3_ori.png'}: unreadable image" in text
    assert f"{folder / '-1'}: no original: {folder / '1'} has no usable *_ori image; skipped" in text
    assert result.annotations == ()


def test_stray_images_and_nested_folders_are_reported(tmp_path: Path) -> None:
    folder = _release(tmp_path)
    _image(folder / "loose.png")
    _image(folder / "1" / "nested" / "f_rec.png")
    text = _problems(read_release(tmp_path))
    assert f"{folder / 'loose.png'}: image outside the N/ and -N/ folders" in text
    assert f"{folder / '1' / 'nested'}: a folder inside 1/ is not part of the layout" in text


# --------------------------------------------------------------------------- the command line


def _import(tmp_path: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    _release(tmp_path / "release")
    code = main(["semsim", "import", str(tmp_path / "release"), "--out", str(out)])
    return code, capsys.readouterr().err


def test_import_out_to_a_folder_is_one_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "outdir").mkdir()
    code, err = _import(tmp_path, tmp_path / "outdir", capsys)
    assert code == 2 and "Traceback" not in err
    assert err == f"flaudit: error: {tmp_path / 'outdir'}: is a folder; give the path of the file to write, e.g. {tmp_path / 'outdir' / 'annotations.jsonl'}\n"


def test_import_out_below_a_file_is_one_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file.txt").write_text("x")
    code, err = _import(tmp_path, tmp_path / "file.txt" / "sub" / "a.jsonl", capsys)
    assert code == 2 and err.count("\n") == 1
    assert f"{tmp_path / 'file.txt'} is a file and not a folder" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_import_out_to_an_unwritable_folder_is_one_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, err = _import(tmp_path, locked / "a.jsonl", capsys)
    finally:
        locked.chmod(0o700)
    assert code == 2 and "is not writable" in err and err.count("\n") == 1


def test_import_writes_the_annotations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _release(tmp_path / "release")
    assert main(["semsim", "import", str(tmp_path / "release"), "--out", str(tmp_path / "new" / "a.jsonl")]) == 0
    assert len((tmp_path / "new" / "a.jsonl").read_text().splitlines()) == 3


# --------------------------------------------------------------------------- random layouts

NAMES = st.sampled_from(["0", "1", "01", "2", "-1", "-01", "-2", "-0", "3", "-3", "x", "1a", "--1", ".hidden"])
FILES = st.tuples(
    st.sampled_from(["ori", "rec", "other"]),
    st.sampled_from(["png", "garbage", "empty", "folder", "link-out", "link-in", "link-loop"]),
    st.sampled_from([".png", ".PNG", ".jpg", ".txt", ""]),
)
FOLDER = st.tuples(NAMES, st.sampled_from(["dir", "link-out", "link-in", "file"]), st.lists(FILES, max_size=4))
LAYOUT = st.tuples(
    st.lists(FOLDER, max_size=6),
    st.sampled_from(["dir", "absent", "file", "link-out"]),  # train_with_ori
    st.sampled_from(["absent", "dir", "file", "link-out"]),  # others
)


def _build(base: Path, layout) -> tuple[Path, list[Path]]:  # type: ignore[no-untyped-def]
    """Write a random layout (beside a folder `outside` the release that links point to): the release root, and the
    real reconstruction files placed in real numbered folders (each must end up annotated or reported)."""
    folders, train_kind, others_kind = layout
    root, outside = base / "release", base / "outside"
    _image(outside / "9_0_ori.png")
    _image(outside / "o_rec.png")
    placed: list[Path] = []
    train = root / "train_with_ori"
    root.mkdir(parents=True)
    if train_kind == "file":
        train.write_text("x")
    elif train_kind == "link-out":
        train.symlink_to(outside, target_is_directory=True)
    elif train_kind == "dir":
        train.mkdir()
        for index, (name, kind, files) in enumerate(folders):
            sub = train / name
            if sub.exists() or sub.is_symlink():
                continue
            if kind == "file":
                sub.write_text("x")
                continue
            if kind == "link-out":
                sub.symlink_to(outside, target_is_directory=True)
                continue
            if kind == "link-in":
                sub.symlink_to(root, target_is_directory=True)
                continue
            sub.mkdir()
            for position, (role, content, suffix) in enumerate(files):
                stem = {"ori": f"{index}_{position}_ori", "rec": f"r{position}_rec", "other": f"n{position}"}[role]
                path = sub / f"{stem}{suffix}"
                if content == "png":
                    path.write_bytes((outside / "o_rec.png").read_bytes())
                    if role == "rec" and suffix.lower() in (".png", ".jpg") and not name.startswith("."):
                        placed.append(path)
                elif content == "garbage":
                    path.write_bytes(b"\x89PNG not really")
                elif content == "empty":
                    path.write_bytes(b"")
                elif content == "folder":
                    path.mkdir()
                elif content == "link-out":
                    path.symlink_to(outside / "o_rec.png")
                elif content == "link-in":
                    path.symlink_to(root)
                else:
                    path.symlink_to(path)  # a loop
    if others_kind == "dir":
        _image(root / "others" / "x.png")
    elif others_kind == "file":
        (root / "others").write_text("x")
    elif others_kind == "link-out":
        (root / "others").symlink_to(outside, target_is_directory=True)
    return root, placed


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layout=LAYOUT)
def test_random_layouts_load_or_fail_with_a_flaudit_error(layout) -> None:  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory() as base:
        root, placed = _build(Path(base), layout)
        try:
            result = read_release(root)
        except FlauditError as err:  # a missing/linked-out train_with_ori, or two folders of one number
            assert str(root) in str(err)
            return
        tree = os.path.realpath(root)
        used = [a.original for a in result.annotations] + [a.reconstruction for a in result.annotations] + list(result.extra_negatives)
        assert all(os.path.realpath(path).startswith(tree + os.sep) for path in used), "read outside the release"
        reported = {problem.path for problem in result.problems}
        annotated = {a.reconstruction for a in result.annotations}
        for path in placed:  # nothing dropped silently
            negative = path.parent.name.startswith("-")
            counterpart = path.parent.with_name(path.parent.name.lstrip("-")) if negative else path.parent
            assert str(path) in annotated or reported & {str(path), str(path.parent), str(counterpart)}, path
