"""splat-avatar: audio-driven 3D Gaussian splatting talking heads."""

from __future__ import annotations

__version__ = "0.1.0"
