"""The errors of `cuda_ext`; callers translate them into their own (splat-avatar's CLI into `AvatarError`)."""

from __future__ import annotations


class CudaExtError(RuntimeError):
    """The kernels cannot do what was asked; `fix` says what to do instead."""

    def __init__(self, message: str, *, fix: str | None = None):
        text = message.rstrip(".") + "."
        if fix:
            text += " " + fix.rstrip(".") + "."
        super().__init__(text)
        self.fix = fix


class CudaExtensionUnavailable(CudaExtError):
    """The CUDA extension cannot be used in this process (no GPU, no toolkit, or its build failed)."""
