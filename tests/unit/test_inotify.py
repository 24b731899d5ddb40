"""The inotify binding and the open-for-writing question, against the real kernel."""

from __future__ import annotations

from pathlib import Path

from autoinfer.events.inotify import TreeWatch, is_network_fs, open_for_writing


def _kinds(tree: TreeWatch) -> list[tuple[str, str]]:
    return [(c.kind, c.path.name) for c in tree.read(1.0)]


def test_a_file_open_for_writing_is_known_until_its_writer_closes_it(tmp_path: Path) -> None:
    target = tmp_path / "x.bin"
    with target.open("wb") as out:
        out.write(b"part")
        out.flush()
        assert open_for_writing(target) is True
    assert open_for_writing(target) is False
    with target.open("rb"):  # readers do not count
        assert open_for_writing(target) is False
    assert open_for_writing(tmp_path / "missing") is None


def test_tree_watch_reports_close_rename_and_new_folders(tmp_path: Path) -> None:
    with TreeWatch(tmp_path) as tree:
        with (tmp_path / "a.zip").open("wb") as out:
            out.write(b"1")
        assert ("written", "a.zip") in _kinds(tree)
        (tmp_path / ".b.part").write_bytes(b"2")
        tree.read(0.2)
        (tmp_path / ".b.part").rename(tmp_path / "b.zip")
        assert ("moved_in", "b.zip") in _kinds(tree)
        (tmp_path / "sub").mkdir()
        assert ("folder", "sub") in _kinds(tree)
        with (tmp_path / "sub" / "c.zip").open("wb") as out:
            out.write(b"3")
            out.flush()
            assert ("changing", "c.zip") in _kinds(tree)
        changes = tree.read(1.0)
        assert [(c.kind, c.path) for c in changes] == [("written", tmp_path / "sub" / "c.zip")]


def test_local_disk_is_not_a_network_filesystem(tmp_path: Path) -> None:
    assert is_network_fs(tmp_path) is False
