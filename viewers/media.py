"""What the page may play or show: files under the folder the command line named, and uploads.

The browser names a file by its path relative to `--media-dir`; nothing outside that folder (after resolving
links and `..`) is ever opened. Uploads are checked for size and type, written only into a temporary directory
that the viewer owns and removes, and decoded before they are offered; a bad one is deleted at once.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from avatar.core.errors import AvatarError
from avatar.media.audio_io import load_audio

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus", ".aac")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MAX_LISTED = 500  # files offered from the folder


@dataclass(frozen=True)
class MediaFolder:
    """Audio files and background images under one folder."""

    root: Path

    def audio_files(self) -> list[str]:
        """Paths relative to the folder of its audio files (by suffix), sorted."""
        return self._listed(AUDIO_SUFFIXES)

    def image_files(self) -> list[str]:
        """Paths relative to the folder of its images (by suffix), sorted."""
        return self._listed(IMAGE_SUFFIXES)

    def resolve(self, name: str, suffixes: tuple[str, ...] = AUDIO_SUFFIXES) -> Path:
        """The file `name` (relative to the folder) names; AvatarError when it lies outside the folder, is not
        a file or not of the kinds in `suffixes`."""
        root = self.root.resolve()
        path = (root / name).resolve()
        if not path.is_relative_to(root):
            raise AvatarError(
                f"{name!r} is outside the media folder", path=root, fix="Choose a file listed in the page"
            )
        if not path.is_file() or path.suffix.lower() not in suffixes:
            raise AvatarError(
                f"{name!r} is not a {'/'.join(suffixes)} file in the media folder",
                path=root,
                fix="Choose a file listed in the page",
            )
        return path

    def _listed(self, suffixes: tuple[str, ...]) -> list[str]:
        root = self.root.resolve()
        found = (
            path
            for path in root.rglob("*")
            if path.suffix.lower() in suffixes and path.is_file() and path.resolve().is_relative_to(root)
        )
        return sorted(str(path.relative_to(root)) for path in itertools.islice(found, MAX_LISTED))


class UploadInbox:
    """Uploaded audio files, kept in a temporary directory that `close()` removes."""

    def __init__(self, max_bytes: int, sample_rate: int):
        self.max_bytes = max_bytes
        self.sample_rate = sample_rate
        self._directory = Path(tempfile.mkdtemp(prefix="avatar-view-"))
        self._count = itertools.count()
        self._lock = threading.Lock()

    @property
    def directory(self) -> Path:
        return self._directory

    def accept(self, name: str, content: bytes) -> Path:
        """The upload `name` with `content`, written to the inbox and decoded; AvatarError (and nothing left on
        disk) when it is too large, not an audio type or not decodable as audio."""
        suffix = Path(name).suffix.lower()
        if len(content) > self.max_bytes:
            raise AvatarError(
                f"the upload {name!r} is {len(content) / 1e6:.1f} MB, over the limit of {self.max_bytes / 1e6:.1f} MB",
                fix="Upload a shorter clip, or start `avatar view` with a larger --max-upload-mb",
            )
        if suffix not in AUDIO_SUFFIXES:
            raise AvatarError(
                f"the upload {name!r} is not an audio file ({suffix or 'no suffix'})",
                fix=f"Upload one of {', '.join(AUDIO_SUFFIXES)}",
            )
        with self._lock:
            path = self._directory / f"upload_{next(self._count):04d}{suffix}"  # never the browser's name
        path.write_bytes(content)
        try:
            load_audio(path, self.sample_rate)
        except AvatarError as error:
            path.unlink(missing_ok=True)
            raise AvatarError(
                f"the upload {name!r} could not be decoded as audio",
                fix="Upload a wav, flac, mp3, m4a or ogg file with a sound track",
            ) from error
        return path

    def close(self) -> None:
        shutil.rmtree(self._directory, ignore_errors=True)
