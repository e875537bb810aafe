"""What a render shows behind the avatar: `--background plate|IMAGE|COLOUR|transparent`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from avatar.core.errors import AvatarError

COLOURS: dict[str, tuple[int, int, int]] = {
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "grey": (128, 128, 128),
    "gray": (128, 128, 128),
    "green": (0, 177, 64),  # chroma-key green
    "blue": (0, 71, 187),  # chroma-key blue
}
_HEX = re.compile(r"#?([0-9a-fA-F]{6})")
FIX = (
    "Pass --background plate, transparent, a colour (" + ", ".join(COLOURS) + ", or #rrggbb) or an image file"
)


@dataclass(frozen=True)
class Background:
    """A parsed `--background`: the capture's plate, a colour, an image, or nothing (transparent)."""

    kind: Literal["plate", "colour", "image", "transparent"]
    colour: tuple[int, int, int] | None = None  # RGB, for "colour"
    image: Path | None = None  # for "image"

    @property
    def transparent(self) -> bool:
        return self.kind == "transparent"

    def pixels(self, plate: np.ndarray) -> np.ndarray:
        """-> [S, S, 3] uint8 RGB behind the avatar, for a frame the size of `plate` (the capture's plate);
        transparent renders are composited over black and keep their alpha apart."""
        if self.kind == "plate":
            return plate
        if self.kind == "image":
            return read_background_image(self.image, plate.shape[0])
        colour = (0, 0, 0) if self.colour is None else self.colour
        return np.broadcast_to(np.array(colour, np.uint8), plate.shape).copy()


PLATE = Background("plate")


def parse_background(text: str) -> Background:
    """`--background` text -> `Background`; AvatarError for an unknown colour or a missing image file."""
    name = text.strip().lower()
    if name in ("plate", "transparent"):
        return Background(name)  # type: ignore[arg-type]
    if name in COLOURS:
        return Background("colour", colour=COLOURS[name])
    match = _HEX.fullmatch(name)
    if match:
        value = int(match.group(1), 16)
        return Background("colour", colour=((value >> 16) & 255, (value >> 8) & 255, value & 255))
    path = Path(text).expanduser()
    if path.is_file():
        return Background("image", image=path)
    looks_like_a_file = path.suffix != "" or "/" in text
    reason = "there is no such image file" if looks_like_a_file else "it is not a known colour"
    raise AvatarError(f"--background {text!r}: {reason}", path=path if looks_like_a_file else None, fix=FIX)


def read_background_image(path: Path, size: int) -> np.ndarray:
    """The image at `path`, [size, size, 3] uint8 RGB, resized to cover the square and cut to it."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise AvatarError("cannot read the background image", path=path, fix="Pass a PNG or JPEG file")
    height, width = image.shape[:2]
    scale = size / min(height, width)
    resized = cv2.resize(
        image,
        (max(size, round(width * scale)), max(size, round(height * scale))),
        interpolation=cv2.INTER_AREA,
    )
    y0, x0 = (resized.shape[0] - size) // 2, (resized.shape[1] - size) // 2
    return cv2.cvtColor(resized[y0 : y0 + size, x0 : x0 + size], cv2.COLOR_BGR2RGB)
