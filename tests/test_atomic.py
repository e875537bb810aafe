"""Atomic writes: every writer fsyncs the finished file before renaming it and the folder after; a failure
leaves the old file and no temporary; `atomic_directory` swaps trees without a moment where neither exists."""

from __future__ import annotations

import ctypes
import errno
import os
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from avatar.core import atomic
from avatar.core.atomic import atomic_directory, write_bytes, write_json, write_npy, write_npz, write_with

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc/self/fd; Linux only"
)


class Events:
    """Records, in order, each `os.fsync` (as the real path of its descriptor) and each `os.replace`."""

    def __init__(self) -> None:
        self.log: list[tuple[str, ...]] = []

    def fsynced(self) -> list[str]:
        return [event[1] for event in self.log if event[0] == "fsync"]

    def assert_committed(self, path: Path) -> None:
        """The temporary that became `path` was fsynced before its rename, and the folder after it."""
        path = Path(os.path.realpath(path))
        renames = [i for i, event in enumerate(self.log) if event[0] == "replace" and event[2] == str(path)]
        assert len(renames) == 1, self.log
        rename = renames[0]
        temporary = self.log[rename][1]
        assert Path(temporary).parent == path.parent and temporary != str(path)
        assert ("fsync", temporary) in self.log[:rename], self.log
        assert ("fsync", str(path.parent)) in self.log[rename + 1 :], self.log


@pytest.fixture
def events(monkeypatch) -> Events:
    recorded = Events()
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        recorded.log.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst, **kwargs) -> None:
        recorded.log.append(("replace", os.path.realpath(src), os.path.realpath(dst)))
        real_replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return recorded


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- files ---------------------------------------------------------------------------------------------------


@linux_only
def test_write_json_fsyncs_the_file_before_the_rename_and_the_folder_after(tmp_path, events):
    path = tmp_path / "out" / "data.json"
    write_json(path, {"a": 1})
    events.assert_committed(path)
    assert path.read_text() == '{\n  "a": 1\n}\n'
    assert _names(path.parent) == ["data.json"]


@linux_only
def test_write_npy_and_npz_fsync_before_the_rename(tmp_path, events):
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    write_npy(tmp_path / "a.npy", array)
    write_npz(tmp_path / "b.npz", {"x": array})
    events.assert_committed(tmp_path / "a.npy")
    events.assert_committed(tmp_path / "b.npz")
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), array)
    with np.load(tmp_path / "b.npz") as loaded:
        np.testing.assert_array_equal(loaded["x"], array)
    assert _names(tmp_path) == ["a.npy", "b.npz"]


@linux_only
def test_save_wav_fsyncs_before_the_rename(tmp_path, events):
    from avatar.media.audio_io import save_wav

    path = tmp_path / "speech.wav"
    save_wav(path, np.zeros(1600, np.float32), 16000)
    events.assert_committed(path)
    with wave.open(str(path), "rb") as reader:
        assert reader.getnframes() == 1600
    assert _names(tmp_path) == ["speech.wav"]


@linux_only
def test_video_writer_fsyncs_before_the_rename(tmp_path, events):
    from avatar.media.video_writer import VideoWriter

    path = tmp_path / "clip.mp4"
    with VideoWriter(path, 25, 32, 32) as writer:
        writer.write(np.zeros((32, 32, 3), np.uint8))
    events.assert_committed(path)
    assert _names(tmp_path) == ["clip.mp4"]


@linux_only
def test_save_checkpoint_fsyncs_the_tensors_before_the_rename(tmp_path, events):
    import torch

    from avatar.runs.checkpoint import INDEX_NAME, load_checkpoint, save_checkpoint

    path = save_checkpoint(tmp_path, 3, {"w": torch.arange(6.0)}, {"note": "x"})
    events.assert_committed(path)
    events.assert_committed(tmp_path / INDEX_NAME)
    tensor_rename = next(
        i for i, e in enumerate(events.log) if e[0] == "replace" and e[2].endswith(path.name)
    )
    index_rename = next(
        i for i, e in enumerate(events.log) if e[0] == "replace" and e[2].endswith(INDEX_NAME)
    )
    assert tensor_rename < index_rename  # the index never names a file that is not yet durable
    assert torch.equal(load_checkpoint(tmp_path).tensors["w"], torch.arange(6.0))
    assert _names(tmp_path) == [INDEX_NAME, path.name]


def test_files_get_the_permissions_open_would_give(tmp_path):
    from avatar.media.video_writer import VideoWriter

    expected = 0o666 & ~atomic._umask()
    write_bytes(tmp_path / "a.bin", b"x")
    with VideoWriter(tmp_path / "clip.mp4", 25, 32, 32) as writer:
        writer.write(np.zeros((32, 32, 3), np.uint8))
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == expected
    assert (tmp_path / "clip.mp4").stat().st_mode & 0o777 == expected


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"old")

    def writer(temporary: Path) -> None:
        temporary.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_with(path, writer)
    assert path.read_bytes() == b"old"
    assert _names(tmp_path) == ["data.bin"]


@pytest.mark.parametrize("target", ["json", "npy", "wav", "video"])
def test_a_failing_fsync_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch, target):
    from avatar.media.audio_io import save_wav
    from avatar.media.video_writer import VideoWriter

    def write_video(path: Path) -> None:
        with VideoWriter(path, 25, 32, 32) as writer:
            writer.write(np.zeros((32, 32, 3), np.uint8))

    write = {
        "json": lambda path: write_json(path, {"new": True}),
        "npy": lambda path: write_npy(path, np.ones(4)),
        "wav": lambda path: save_wav(path, np.zeros(100, np.float32), 16000),
        "video": write_video,
    }[target]
    suffix = "mp4" if target == "video" else target  # VideoWriter writes by the suffix
    path = tmp_path / f"out.{suffix}"
    path.write_bytes(b"old")

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="Input/output"):
        write(path)
    assert path.read_bytes() == b"old"
    assert _names(tmp_path) == [path.name]


@linux_only
def test_folder_fsync_is_skipped_where_unsupported(tmp_path, monkeypatch):
    def fsync(fd: int) -> None:
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "fsync", fsync)
    atomic.fsync_directory(tmp_path)  # no error
    write_bytes(tmp_path / "a.bin", b"new")
    assert (tmp_path / "a.bin").read_bytes() == b"new"


# --- directories ---------------------------------------------------------------------------------------------


def _tree(path: Path, files: dict[str, str]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)


def _read_tree(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): p.read_text() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture
def exchange_spy(monkeypatch):
    """Wraps atomic._exchange, recording each call with both trees as they were just before it."""
    calls: list[dict] = []
    real = atomic._exchange

    def spy(first: Path, second: Path) -> bool:
        call = {"first": _read_tree(first), "second": _read_tree(second)}
        call["swapped"] = real(first, second)
        calls.append(call)
        return call["swapped"]

    monkeypatch.setattr(atomic, "_exchange", spy)
    return calls


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="renameat2 is Linux only")
def test_atomic_directory_swaps_with_rename_exchange_on_linux(tmp_path, exchange_spy, events):
    path = tmp_path / "frames"
    _tree(path, {"000.jpg": "old", "sub/a.txt": "old"})
    with atomic_directory(path) as partial:
        assert partial == tmp_path / "frames.partial"
        _tree(partial, {"000.jpg": "new", "001.jpg": "new"})
        assert _read_tree(path) == {"000.jpg": "old", "sub/a.txt": "old"}  # untouched while writing
    assert exchange_spy == [
        {
            "first": {"000.jpg": "new", "001.jpg": "new"},
            "second": {"000.jpg": "old", "sub/a.txt": "old"},
            "swapped": True,  # the kernel really exchanged them: no fallback
        }
    ]
    assert not any(event[0] == "replace" for event in events.log)  # no two-rename swap
    # the new files were made durable before the swap
    fsynced, base = events.fsynced(), Path(os.path.realpath(tmp_path))
    assert str(base / "frames.partial" / "000.jpg") in fsynced
    assert str(base / "frames.partial" / "001.jpg") in fsynced
    assert _read_tree(path) == {"000.jpg": "new", "001.jpg": "new"}
    assert _names(tmp_path) == ["frames"]


def test_atomic_directory_creates_a_missing_directory(tmp_path, exchange_spy):
    path = tmp_path / "deep" / "masks"
    with atomic_directory(path) as partial:
        _tree(partial, {"a.png": "new"})
    assert exchange_spy == []  # nothing to exchange with: a plain rename
    assert _read_tree(path) == {"a.png": "new"}
    assert _names(path.parent) == ["masks"]


def test_atomic_directory_keeps_the_partial_on_error_and_empties_it_next_time(tmp_path):
    path = tmp_path / "frames"
    _tree(path, {"a": "old"})
    with pytest.raises(RuntimeError):
        with atomic_directory(path) as partial:
            _tree(partial, {"b": "half"})
            raise RuntimeError("crash")
    assert _read_tree(path) == {"a": "old"}
    assert _read_tree(tmp_path / "frames.partial") == {"b": "half"}
    with atomic_directory(path) as partial:
        assert list(partial.iterdir()) == []
        _tree(partial, {"c": "new"})
    assert _read_tree(path) == {"c": "new"}
    assert _names(tmp_path) == ["frames"]


def _fake_renameat2(code: int):
    def renameat2(*args) -> int:
        ctypes.set_errno(code)
        return -1

    return renameat2


@pytest.fixture(params=["no renameat2", "EINVAL", "ENOSYS"])
def no_exchange(request, monkeypatch) -> None:
    """Makes renameat2 unavailable: missing from libc, or refused by the filesystem or the kernel."""
    if request.param == "no renameat2":
        monkeypatch.setattr(atomic, "_libc_renameat2", lambda: None)
    else:
        fake = _fake_renameat2(getattr(errno, request.param))
        monkeypatch.setattr(atomic, "_libc_renameat2", lambda: fake)


def test_fallback_swaps_through_an_old_sibling(tmp_path, no_exchange, exchange_spy, monkeypatch):
    path = tmp_path / "frames"
    old = tmp_path / "frames.old"
    _tree(path, {"000.jpg": "old"})
    seen: list[tuple[bool, bool]] = []
    real_replace = os.replace

    def replace(src, dst, **kwargs) -> None:
        real_replace(src, dst, **kwargs)
        seen.append((path.exists(), old.exists()))

    monkeypatch.setattr(os, "replace", replace)
    with atomic_directory(path) as partial:
        _tree(partial, {"000.jpg": "new"})
        assert _read_tree(path) == {"000.jpg": "old"}
    assert [call["swapped"] for call in exchange_spy] == [False]
    assert seen == [(False, True), (True, True)]  # after each rename, the old or the new tree is reachable
    assert _read_tree(path) == {"000.jpg": "new"}
    assert _names(tmp_path) == ["frames"]


def test_fallback_restores_the_old_tree_when_the_second_rename_fails(tmp_path, no_exchange, monkeypatch):
    path = tmp_path / "frames"
    _tree(path, {"a": "old"})
    real_replace = os.replace

    def replace(src, dst, **kwargs) -> None:
        if Path(src).name == "frames.partial":
            raise OSError(errno.EIO, "Input/output error")
        real_replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="Input/output"):
        with atomic_directory(path) as partial:
            _tree(partial, {"a": "new"})
    assert _read_tree(path) == {"a": "old"}
    assert _read_tree(tmp_path / "frames.partial") == {"a": "new"}
    assert not (tmp_path / "frames.old").exists()


def test_next_call_restores_an_old_tree_left_by_a_crash_between_the_renames(tmp_path, no_exchange):
    path = tmp_path / "frames"
    _tree(tmp_path / "frames.old", {"a": "old"})  # as a crash after `path -> path.old` leaves it
    _tree(tmp_path / "frames.partial", {"a": "new"})
    with pytest.raises(RuntimeError):
        with atomic_directory(path) as partial:
            assert _read_tree(path) == {"a": "old"}  # restored before anything else
            assert not (tmp_path / "frames.old").exists()
            assert list(partial.iterdir()) == []
            raise RuntimeError("crash")
    assert _read_tree(path) == {"a": "old"}
    with atomic_directory(path) as partial:
        _tree(partial, {"a": "new"})
    assert _read_tree(path) == {"a": "new"}
    assert _names(tmp_path) == ["frames"]


def test_next_call_removes_an_old_tree_left_beside_a_complete_one(tmp_path):
    path = tmp_path / "frames"
    _tree(path, {"a": "new"})
    _tree(tmp_path / "frames.old", {"a": "old"})  # as a crash before removing `path.old` leaves it
    with atomic_directory(path) as partial:
        assert _read_tree(path) == {"a": "new"}
        assert not (tmp_path / "frames.old").exists()
        _tree(partial, {"b": "newer"})
    assert _read_tree(path) == {"b": "newer"}
    assert _names(tmp_path) == ["frames"]


def test_an_exchange_failing_for_another_reason_raises_and_changes_nothing(tmp_path, monkeypatch):
    fake = _fake_renameat2(errno.EACCES)
    monkeypatch.setattr(atomic, "_libc_renameat2", lambda: fake)
    path = tmp_path / "frames"
    _tree(path, {"a": "old"})
    with pytest.raises(PermissionError):
        with atomic_directory(path) as partial:
            _tree(partial, {"a": "new"})
    assert _read_tree(path) == {"a": "old"}
    assert _read_tree(tmp_path / "frames.partial") == {"a": "new"}
