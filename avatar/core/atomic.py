"""Writes that never leave a half-written file: write beside the target, make it durable, then rename over it.

Every file writer here goes through `atomic_path`, whose last step is `commit`: fsync the finished temporary
file, give it the permissions a plain `open()` would, `os.replace` it onto the target and fsync the folder, so
that after a crash (or power loss) the target is either the old file or the complete new one.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from avatar.core.errors import AvatarError

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
# renameat2 answers these when the kernel or the filesystem cannot exchange; then a two-rename swap is used.
_NO_EXCHANGE = {errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP}
# fsync of a folder answers these on filesystems that do not support it; the rename itself still happened.
_NO_DIRECTORY_FSYNC = {errno.EINVAL, errno.EBADF, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES, errno.EPERM}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_file(path: Path) -> None:
    """Flushes the file `path` to stable storage."""
    handle = os.open(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)  # Windows' fsync needs write access
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def fsync_directory(path: Path) -> None:
    """Flushes the folder `path` (its entries: a rename into it, a new file) to stable storage. A no-op where a
    folder cannot be opened (Windows) or its filesystem does not support fsync on folders."""
    if os.name == "nt":
        return
    try:
        handle = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError as error:
        if error.errno not in _NO_DIRECTORY_FSYNC:
            raise
    finally:
        os.close(handle)


def commit(temporary: Path, path: Path, *, mode: int | None = None) -> None:
    """Makes the finished file `temporary` the file `path`, durably: fsync it, chmod it to `mode` (when given),
    `os.replace` it onto `path`, fsync the folder. `temporary` must be in the same folder as `path`.

    Writers that let `tempfile.mkstemp` create the temporary file (mode 0600) pass `mode=umask_mode()`; a
    temporary file made by `open()` or a library already has those permissions."""
    temporary, path = Path(temporary), Path(path)
    fsync_file(temporary)
    if mode is not None:
        os.chmod(temporary, mode)
    os.replace(temporary, path)
    fsync_directory(path.parent)


def umask_mode() -> int:
    """The permissions `open()` gives a new file under the current umask."""
    return 0o666 & ~_umask()


@contextmanager
def atomic_path(path: Path, suffix: str | None = None) -> Iterator[Path]:
    """Yields a temporary path in the same folder; on success it is `commit`ted onto `path` (fsynced, renamed,
    folder fsynced), on error it is removed and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(
        prefix=f".{path.name}.",
        suffix=(suffix if suffix is not None else path.suffix) + ".partial",
        dir=path.parent,
    )
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        commit(temporary, path, mode=umask_mode())
    finally:
        temporary.unlink(missing_ok=True)


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as file:
            file.write(data)


def write_json(path: Path, data: Any) -> None:
    write_bytes(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode())


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as file:
            np.savez(file, **arrays)


def write_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as file:
            np.save(file, array)


def write_with(path: Path, writer: Callable[[Path], None]) -> None:
    """Calls writer(temporary_path) and moves the result into place."""
    with atomic_path(path) as temporary:
        writer(temporary)


@functools.cache
def _libc_renameat2() -> Callable[..., int] | None:
    """libc's renameat2 (glibc 2.28+, musl 1.2.5+), or None off Linux or where libc lacks it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def _exchange(first: Path, second: Path) -> bool:
    """Swaps the two existing paths `first` and `second` in one atomic step (renameat2 RENAME_EXCHANGE).
    Returns False, having changed nothing, where that is unsupported (not Linux, old libc, kernel or
    filesystem); raises OSError for any other failure."""
    renameat2 = _libc_renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _NO_EXCHANGE:
        return False
    raise OSError(code, os.strerror(code), str(first), None, str(second))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _flush_tree(root: Path) -> None:
    """Makes everything under the folder `root` durable: its files' data and its folders' entries."""
    for folder, _, files in os.walk(root):
        for name in files:
            fsync_file(Path(folder, name))
        fsync_directory(Path(folder))


def _recover(path: Path, old: Path) -> None:
    """Undoes what a crash in the middle of the two-rename swap left: `path` gone and the previous directory
    at `old` (restored), or `path` in place and `old` not yet removed (removed)."""
    if not old.exists():
        return
    if os.path.lexists(path):
        _remove(old)
    else:
        os.replace(old, path)
        fsync_directory(path.parent)


@contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """Yields `path.partial/` (emptied first); on success it replaces `path/`, on error it stays for inspection
    and is emptied by the next attempt.

    The replacement never leaves a moment in which neither the old nor the new `path/` exists:

    - First the new tree is made durable (each file and folder fsynced).
    - If `path` does not exist yet, `path.partial` is renamed onto it.
    - On Linux, `path.partial` and `path` are swapped in one step with renameat2(RENAME_EXCHANGE); the old
      tree, now at `path.partial`, is then removed (a crash before that leaves it there, and the next attempt
      empties it).
    - Where the exchange is unsupported (not Linux, old libc, kernel or filesystem), the old tree is renamed
      to `path.old`, `path.partial` to `path`, and `path.old` is removed. A crash between the two renames
      leaves only `path.old`; the next `atomic_directory(path)` moves it back to `path` before anything else
      (and removes a `path.old` left beside a complete `path`), so readers see the old tree again.
    """
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    old = path.with_name(path.name + ".old")
    _recover(path, old)
    if os.path.lexists(partial):
        _remove(partial)
    partial.mkdir(parents=True)
    yield partial
    _flush_tree(partial)
    if not os.path.lexists(path):
        os.replace(partial, path)
        fsync_directory(path.parent)
    elif _exchange(partial, path):
        fsync_directory(path.parent)
        _remove(partial)  # the old tree, swapped to the partial's name
    else:
        os.replace(path, old)
        try:
            os.replace(partial, path)
        except BaseException:
            os.replace(old, path)
            raise
        fsync_directory(path.parent)
        _remove(old)


def check_writable(path: Path, *, flag: str) -> None:
    """Raises AvatarError, before any work, when the file `path` (given with `flag`) cannot be written:
    its folder cannot be made, is not writable, or `path` is a directory."""
    path = Path(path)
    fix = f"Pass a {flag} path in a folder you can write to"
    if path.is_dir():
        raise AvatarError(f"{flag} is a directory, not a file", path=path, fix=f"Pass a file name to {flag}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=path.parent)
        os.close(handle)
        os.unlink(name)
    except OSError as error:
        raise AvatarError(
            f"{flag} cannot be written there ({error.strerror or error})", path=path, fix=fix
        ) from error
