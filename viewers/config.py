"""`avatar view`'s options."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

from avatar.core.backends import DeviceName

DrawOn = Literal["browser", "server"]


@dataclass
class ViewConfig:
    """Start a web viewer of a fitted avatar: look around it, play it with audio, record camera moves and
    export them as a video."""

    run: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN")]
    """An `avatar fit` output directory."""
    host: str = "127.0.0.1"
    """Address to listen on. Only this machine can connect to 127.0.0.1; any other address lets other machines
    on the network open the viewer (a warning is printed)."""
    port: int = 8080
    """Port to listen on (0: any free port)."""
    media_dir: Path | None = None
    """A folder whose audio files (and background images) the page may choose; nothing outside it is opened."""
    max_upload_mb: float = 20.0
    """Largest audio file the page may upload, megabytes."""
    out: Path | None = None
    """Where exported videos and camera paths are written; default RUN/view."""
    dataset: Path | None = None
    """The dataset the run was fitted to, if it has moved."""
    draw_on: DrawOn = "browser"
    """Who draws the avatar: the browser (its splats are sent, camera moves need no round trip; best with a GPU
    in the browser) or the server (an image per frame, at most 256 pixels across, for a browser without a
    GPU). The page can switch."""
    device: DeviceName = "auto"
    """Where to deform the avatar (and draw it, when the server does)."""
