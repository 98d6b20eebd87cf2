"""The work dir's way to a node and back: what travels, and what a node cannot do here."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from cambrian.sandbox import _transfer
from cambrian.sandbox._transfer import (
    Changes,
    apply_changes,
    pack_changes,
    pack_tree,
    snapshot,
    unpack_tree,
)


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_a_tree_travels_with_inward_links_only(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "a.py").write_text("a = 1\n")
    (src / "inside").symlink_to("pkg/a.py")
    (src / "outside").symlink_to("/etc/passwd")
    unpack_tree(pack_tree(src), dest)
    assert (dest / "pkg" / "a.py").read_text() == "a = 1\n"
    assert (dest / "inside").is_symlink() and (dest / "inside").read_text() == "a = 1\n"
    assert not (dest / "outside").exists() and not (dest / "outside").is_symlink()


def test_changes_come_back_deletions_and_replacements_included(tmp_path: Path) -> None:
    node, here = tmp_path / "node", tmp_path / "here"
    for root in (node, here):
        root.mkdir()
        (root / "evaluate.py").write_text("original\n")
        (root / "gone.txt").write_text("x\n")
        (root / "same.txt").write_text("same\n")
    before = snapshot(node)
    (node / "gone.txt").unlink()
    (node / "evaluate.py").unlink()
    (node / "evaluate.py").symlink_to("/etc/passwd")
    (node / "out").mkdir()
    (node / "out" / "result.json").write_text('{"score": 1}\n')
    changes = pack_changes(node, before, ["evaluate.py"])
    assert changes.deleted == ("gone.txt",) and changes.replaced == ("evaluate.py",)
    assert apply_changes(here, changes) == []
    assert (here / "out" / "result.json").read_text() == '{"score": 1}\n'
    assert not (here / "gone.txt").exists() and (here / "same.txt").read_text() == "same\n"
    # a file replaced by a link becomes a folder here: never a link, and tamper checks see it
    assert (here / "evaluate.py").is_dir() and not (here / "evaluate.py").is_symlink()


def test_a_forged_modification_time_is_still_a_change(tmp_path: Path) -> None:
    (tmp_path / "evaluate.py").write_text("original\n")
    before = snapshot(tmp_path)
    stat = (tmp_path / "evaluate.py").stat()
    (tmp_path / "evaluate.py").write_text("hacked!!\n")  # same size
    os.utime(tmp_path / "evaluate.py", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    here = tmp_path / "here"
    here.mkdir()
    apply_changes(here, pack_changes(tmp_path, before))
    assert (here / "evaluate.py").read_text() == "hacked!!\n"


def test_protected_files_come_back_first_and_past_the_caps(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(_transfer, "MAX_RETURN_BYTES", 4096)
    monkeypatch.setattr(_transfer, "MAX_RETURN_ENTRIES", 3)
    (tmp_path / "evaluate.py").write_text("original\n")
    before = snapshot(tmp_path)
    for i in range(20):
        (tmp_path / f"0junk{i:02}").write_bytes(b"j" * 1000)
    (tmp_path / "evaluate.py").write_text("hacked\n")
    changes = pack_changes(tmp_path, before, ["evaluate.py"])
    names = tarfile.open(fileobj=io.BytesIO(changes.archive)).getnames()
    assert names[0] == "evaluate.py"
    assert len(names) <= 4 and len(changes.skipped) == 21 - len(names)
    assert len(changes.archive) <= tarfile.RECORDSIZE  # headers counted, not only sizes


def test_many_empty_files_are_capped_by_count(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(_transfer, "MAX_RETURN_ENTRIES", 50)
    before = snapshot(tmp_path)
    for i in range(500):
        (tmp_path / f"f{i}").touch()
    changes = pack_changes(tmp_path, before)
    assert len(tarfile.open(fileobj=io.BytesIO(changes.archive)).getnames()) == 50
    assert len(changes.skipped) == 450


@pytest.mark.parametrize(
    "name", ["../escape.txt", "/tmp/absolute.txt", "link/x.txt", "a/../../escape.txt"]
)
def test_a_crafted_answer_writes_nothing_outside(tmp_path: Path, name: str) -> None:
    here, outside = tmp_path / "here", tmp_path / "outside"
    here.mkdir()
    outside.mkdir()
    (here / "link").symlink_to(outside)
    refused = apply_changes(here, Changes(archive=_tar({name: b"pwned"})))
    assert refused == [name]
    assert not list(outside.iterdir()) and not (tmp_path / "escape.txt").exists()
    assert not Path("/tmp/absolute.txt").exists()


def test_a_written_file_never_goes_through_a_link_or_hard_link(tmp_path: Path) -> None:
    here, secret = tmp_path / "here", tmp_path / "secret.txt"
    here.mkdir()
    secret.write_text("secret\n")
    os.link(secret, here / "hard.txt")
    (here / "soft.txt").symlink_to(secret)
    changes = Changes(archive=_tar({"hard.txt": b"new", "soft.txt": b"new"}))
    assert apply_changes(here, changes) == []
    assert secret.read_text() == "secret\n"
    assert (here / "hard.txt").read_text() == "new" and not (here / "soft.txt").is_symlink()


def test_deleting_dot_dot_or_through_a_link_deletes_nothing(tmp_path: Path) -> None:
    here, outside = tmp_path / "here", tmp_path / "outside"
    here.mkdir()
    outside.mkdir()
    (outside / "keep.txt").write_text("keep\n")
    (here / "link").symlink_to(outside)
    apply_changes(here, Changes(deleted=("..", "link/keep.txt", "../outside/keep.txt")))
    assert (outside / "keep.txt").read_text() == "keep\n"
