"""Image-quality metrics on [..., H, W, C] images in [0, 1]: PSNR (optionally masked) and SSIM.

SSIM follows Wang et al. 2004 as `skimage.metrics.structural_similarity` computes it with
`gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=-1`:
an 11x11 Gaussian window (sigma 1.5, truncated at radius 5 and normalised), C1 = (0.01)^2, C2 = (0.03)^2,
per channel. `ssim` averages the map over the "valid" pixels, those whose window lies inside the image,
which is exactly what skimage averages (it filters with reflected borders, then crops the window radius
from every side). Everything is differentiable, so `1 - ssim(...)` serves as the D-SSIM training loss.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

K1, K2 = 0.01, 0.03


def psnr(pred: Tensor, target: Tensor, mask: Tensor | None = None, max_value: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio in dB, per image.

    pred, target: [..., H, W, C]
    mask: [..., H, W] or [..., H, W, 1], bool or float weights; the squared error is averaged over the
        masked pixels (and all channels) only. Leading dimensions broadcast against the images'.
    Returns [...]: +inf where the images are identical (on the mask), NaN where the mask is empty.
    """
    pred, target = _as_float(pred), _as_float(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    squared_error = (pred - target) ** 2
    if mask is None:
        mse = squared_error.mean(dim=(-3, -2, -1))
    else:
        weight = _mask_with_channel_axis(mask, pred).to(pred.dtype)
        weight = weight.expand(torch.broadcast_shapes(weight.shape, pred.shape))
        mse = (squared_error * weight).sum(dim=(-3, -2, -1)) / weight.sum(dim=(-3, -2, -1))
    return 10.0 * torch.log10(max_value**2 / mse)


def psnr_from_mse(mse: float, max_value: float = 1.0) -> float:
    """PSNR in dB of a mean squared error already averaged elsewhere (e.g. over a whole video)."""
    return math.inf if mse == 0 else 10.0 * math.log10(max_value**2 / mse)


def ssim(
    pred: Tensor,
    target: Tensor,
    window_size: int = 11,
    sigma: float = 1.5,
    reduction: Literal["mean", "none"] = "mean",
) -> Tensor:
    """Structural similarity over the valid pixels (see the module docstring), for images in [0, 1].

    pred, target: [..., H, W, C] with H, W >= window_size
    Returns a scalar (mean over all images) for reduction="mean", else [...] per image.
    """
    similarity = ssim_map(pred, target, window_size, sigma, padding="valid")
    if reduction == "mean":
        return similarity.mean()
    if reduction == "none":
        return similarity.mean(dim=(-3, -2, -1))
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def ssim_map(
    pred: Tensor,
    target: Tensor,
    window_size: int = 11,
    sigma: float = 1.5,
    padding: Literal["valid", "same"] = "valid",
) -> Tensor:
    """Per-pixel, per-channel SSIM.

    pred, target: [..., H, W, C] in [0, 1]
    padding="valid": [..., H - window_size + 1, W - window_size + 1, C], only windows inside the image.
    padding="same": [..., H, W, C], borders mirrored like scipy's "reflect" (d c b a | a b c d), so the map
        equals skimage's `full=True` map; use this to weight the map by a mask of the image's size.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    if pred.ndim < 3:
        raise ValueError(f"images must be [..., H, W, C], got shape {tuple(pred.shape)}")
    if window_size < 1 or window_size % 2 == 0:
        raise ValueError(f"window_size must be a positive odd number, got {window_size}")
    if padding not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
    radius = window_size // 2
    *leading, height, width, channels = pred.shape
    limit = window_size if padding == "valid" else radius
    if height < limit or width < limit:
        raise ValueError(f"images of {height}x{width} are too small for a {window_size}-pixel SSIM window")

    x = _as_float(pred)
    y = _as_float(target).to(x.dtype)
    # Elementwise work runs fastest on contiguous [B, C, H, W] and the convolutions on channels-last memory;
    # on CPU each is several times slower in the other layout.
    x = x.reshape(-1, height, width, channels).permute(0, 3, 1, 2).contiguous()
    y = y.reshape(-1, height, width, channels).permute(0, 3, 1, 2).contiguous()
    if padding == "same":
        x, y = _pad_symmetric(x, radius), _pad_symmetric(y, radius)
    moments = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    blurred = _gaussian_blur_valid(moments, window_size, sigma)
    mu_x, mu_y, xx, yy, xy = blurred.chunk(5, dim=1)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    var_x, var_y, cov_xy = xx - mu_xx, yy - mu_yy, xy - mu_xy
    c1, c2 = K1**2, K2**2
    similarity = ((2 * mu_xy + c1) * (2 * cov_xy + c2)) / ((mu_xx + mu_yy + c1) * (var_x + var_y + c2))
    similarity = similarity.permute(0, 2, 3, 1)
    return similarity.reshape(*leading, *similarity.shape[1:])


def gaussian_window(window_size: int, sigma: float, dtype: torch.dtype = torch.float32) -> Tensor:
    """[window_size] normalised 1-D Gaussian, the separable factor of the SSIM window."""
    offsets = torch.arange(window_size, dtype=torch.float64) - window_size // 2
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return (weights / weights.sum()).to(dtype)


def box_from_mask(mask: np.ndarray | Tensor, margin: int = 0) -> tuple[int, int, int, int] | None:
    """Bounding box of the nonzero pixels of a [H, W] or [H, W, 1] mask as half-open (y0, y1, x0, x1), so
    `image[y0:y1, x0:x1]` is the box; grown by `margin` pixels and clipped to the image. None if empty."""
    if isinstance(mask, Tensor):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.ndim != 2:
        raise ValueError(f"mask must be [H, W] or [H, W, 1], got shape {mask.shape}")
    rows = np.flatnonzero(mask.any(axis=1))
    columns = np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return None
    height, width = mask.shape
    return (
        max(0, int(rows[0]) - margin),
        min(height, int(rows[-1]) + 1 + margin),
        max(0, int(columns[0]) - margin),
        min(width, int(columns[-1]) + 1 + margin),
    )


def _as_float(image: Tensor) -> Tensor:
    return image if torch.is_floating_point(image) else image.to(torch.float32)


def _mask_with_channel_axis(mask: Tensor, image: Tensor) -> Tensor:
    """[..., H, W] or [..., H, W, 1] -> [..., H, W, 1] for an [..., H, W, C] image."""
    image_size = tuple(image.shape[-3:-1])
    if mask.ndim >= 3 and mask.shape[-1] == 1 and tuple(mask.shape[-3:-1]) == image_size:
        return mask
    if mask.ndim >= 2 and tuple(mask.shape[-2:]) == image_size:
        return mask[..., None]
    raise ValueError(
        f"mask {tuple(mask.shape)} does not match images {tuple(image.shape)}: expected [..., H, W] or "
        "[..., H, W, 1]"
    )


def _gaussian_blur_valid(images: Tensor, window_size: int, sigma: float) -> Tensor:
    """[B, C, H, W] -> [B, C, H - window_size + 1, W - window_size + 1], separable, each channel alone."""
    channels = images.shape[1]
    window = gaussian_window(window_size, sigma, images.dtype).to(images.device)
    images = images.contiguous(memory_format=torch.channels_last)
    images = F.conv2d(images, window.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    images = F.conv2d(images, window.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return images.contiguous()


def _pad_symmetric(images: Tensor, radius: int) -> Tensor:
    """[B, C, H, W] -> [B, C, H + 2r, W + 2r], edge pixels repeated once (scipy's "reflect" mode)."""

    def indices(size: int) -> Tensor:
        inside = torch.arange(size, device=images.device)
        return torch.cat([inside[:radius].flip(0), inside, inside[size - radius :].flip(0)])

    images = images.index_select(2, indices(images.shape[2]))
    return images.index_select(3, indices(images.shape[3]))
