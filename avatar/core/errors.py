"""User-facing errors: one paragraph that names the file and says how to fix it."""

from __future__ import annotations

from pathlib import Path


class AvatarError(Exception):
    """An error caused by the user's input, printed without a traceback by the CLI."""

    def __init__(self, message: str, *, path: str | Path | None = None, fix: str | None = None):
        parts = []
        if path is not None:
            parts.append(f"{path}:")
        parts.append(message.rstrip("."))
        text = " ".join(parts) + "."
        if fix:
            text += " " + fix.rstrip(".") + "."
        super().__init__(text)
        self.path = None if path is None else Path(path)
        self.fix = fix
