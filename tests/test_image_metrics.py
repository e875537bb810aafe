"""PSNR and SSIM against their definitions and scikit-image; SSIM's gradient and speed for the D-SSIM loss."""

from __future__ import annotations

import math
import time

import cv2
import numpy as np
import pytest
import torch
from skimage import data as skimage_data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from avatar.metrics.image import box_from_mask, psnr, psnr_from_mse, ssim, ssim_map


def _skimage_ssim(a: np.ndarray, b: np.ndarray, full: bool = False):
    return structural_similarity(
        a,
        b,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1,
        channel_axis=-1,
        full=full,
    )


def _astronaut(size: int) -> np.ndarray:
    image = cv2.resize(skimage_data.astronaut(), (size, size), interpolation=cv2.INTER_AREA)
    return image.astype(np.float64) / 255


def _image_pairs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    noise = rng.random((48, 70, 3))
    portrait = _astronaut(128)
    return {
        "uniform noise vs noisier copy": (
            noise,
            np.clip(noise + 0.2 * rng.standard_normal(noise.shape), 0, 1),
        ),
        "two unrelated noise images": (noise, rng.random((48, 70, 3))),
        "portrait vs noisy portrait": (
            portrait,
            np.clip(portrait + 0.05 * rng.standard_normal(portrait.shape), 0, 1),
        ),
        "portrait vs blurred portrait": (portrait, cv2.GaussianBlur(portrait, (0, 0), 2.0)),
        "portrait vs shifted, darker portrait": (portrait, 0.8 * np.roll(portrait, 3, axis=1)),
        "grey single channel": (portrait[..., :1], cv2.GaussianBlur(portrait, (0, 0), 1.0)[..., :1]),
    }


def test_psnr_of_known_noise_level():
    rng = np.random.default_rng(1)
    target = np.full((256, 256, 3), 0.5)
    sigma = 0.05
    pred = target + sigma * rng.standard_normal(target.shape)
    value = psnr(torch.tensor(pred), torch.tensor(target)).item()
    assert value == pytest.approx(10 * math.log10(1 / sigma**2), abs=0.05)  # 26.02 dB
    assert value == pytest.approx(peak_signal_noise_ratio(target, pred, data_range=1.0), abs=1e-9)
    offset = psnr(torch.full((8, 8, 3), 0.6), torch.full((8, 8, 3), 0.5)).item()
    assert offset == pytest.approx(20.0, abs=1e-4)  # MSE 0.01
    in_bytes = psnr(torch.full((8, 8, 3), 153), torch.full((8, 8, 3), 128), max_value=255).item()
    assert in_bytes == pytest.approx(10 * math.log10(255**2 / 25**2), abs=1e-4)


def test_psnr_of_identical_images_is_infinite():
    image = torch.rand(16, 16, 3)
    assert psnr(image, image.clone()).item() == math.inf
    assert psnr_from_mse(0.0) == math.inf
    assert psnr_from_mse(0.01) == pytest.approx(20.0)


def test_masked_psnr_ignores_pixels_outside_the_mask():
    rng = np.random.default_rng(2)
    target = torch.tensor(rng.random((64, 64, 3)))
    noise = 0.05 * torch.tensor(rng.standard_normal((64, 64, 3)))
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[16:48, 8:40] = True
    inside_only = target + noise * mask[..., None]
    outside_only = target + torch.where(mask[..., None], 0.0, 1.0)  # wrecked everywhere but the mask
    assert psnr(outside_only, target, mask).item() == math.inf
    assert psnr(outside_only, target).item() < 5

    expected = 10 * math.log10(1 / float((noise[16:48, 8:40] ** 2).mean()))
    garbage_outside = inside_only + torch.where(mask[..., None], 0.0, 0.7)
    for form in (mask, mask[..., None], mask.double(), mask.float()[..., None]):
        assert psnr(garbage_outside, target, form).item() == pytest.approx(expected, abs=1e-9)

    batch_pred = torch.stack([garbage_outside, outside_only])
    batch_target = torch.stack([target, target])
    per_image = psnr(batch_pred, batch_target, torch.stack([mask, mask]))
    assert per_image.shape == (2,)
    assert per_image[0].item() == pytest.approx(expected, abs=1e-9) and per_image[1].item() == math.inf
    shared_mask = psnr(batch_pred, batch_target, mask)  # one mask broadcast over the batch
    assert torch.equal(shared_mask, per_image)
    assert math.isnan(psnr(garbage_outside, target, torch.zeros(64, 64)).item())
    with pytest.raises(ValueError, match="does not match"):
        psnr(target, target, torch.ones(32, 32))


@pytest.mark.parametrize("name", list(_image_pairs()))
def test_ssim_matches_skimage(name):
    a, b = _image_pairs()[name]
    expected = _skimage_ssim(a, b)
    in_float64 = ssim(torch.tensor(a), torch.tensor(b)).item()
    in_float32 = ssim(torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32)).item()
    assert in_float64 == pytest.approx(expected, abs=1e-10)
    assert in_float32 == pytest.approx(expected, abs=1e-4)


def test_same_padding_map_equals_skimages_full_map_and_valid_map_is_its_inside():
    a, b = _image_pairs()["portrait vs noisy portrait"]
    _, expected = _skimage_ssim(a, b, full=True)
    same = ssim_map(torch.tensor(a), torch.tensor(b), padding="same").numpy()
    valid = ssim_map(torch.tensor(a), torch.tensor(b)).numpy()
    assert same.shape == a.shape and valid.shape == (118, 118, 3)
    np.testing.assert_allclose(same, expected, atol=1e-10)
    np.testing.assert_allclose(valid, expected[5:-5, 5:-5], atol=1e-10)


def test_ssim_per_image_and_batched_agree():
    pairs = [_image_pairs()[name] for name in ("portrait vs noisy portrait", "portrait vs blurred portrait")]
    pred = torch.tensor(np.stack([p for p, _ in pairs]))
    target = torch.tensor(np.stack([t for _, t in pairs]))
    per_image = ssim(pred, target, reduction="none")
    assert per_image.shape == (2,)
    for value, (p, t) in zip(per_image, pairs):
        assert value.item() == pytest.approx(_skimage_ssim(p, t), abs=1e-10)
    assert ssim(pred, target).item() == pytest.approx(per_image.mean().item(), abs=1e-12)
    nested = ssim(pred[None], target[None], reduction="none")
    assert nested.shape == (1, 2)


def test_ssim_of_identical_images_is_one():
    image = torch.tensor(_astronaut(64), dtype=torch.float32)
    assert ssim(image, image.clone()).item() == pytest.approx(1.0, abs=1e-6)
    flat = torch.full((32, 32, 3), 0.3)
    assert ssim(flat, flat.clone()).item() == pytest.approx(1.0, abs=1e-6)


def test_ssim_is_differentiable():
    rng = np.random.default_rng(3)
    small = torch.tensor(rng.random((2, 13, 12, 2)), requires_grad=True)
    other = torch.tensor(rng.random((2, 13, 12, 2)))
    assert torch.autograd.gradcheck(lambda x: ssim(x, other), (small,), fast_mode=True)
    same_mean = lambda x: ssim_map(x, other, padding="same").mean()
    assert torch.autograd.gradcheck(same_mean, (small,), fast_mode=True)

    target = torch.tensor(_astronaut(96), dtype=torch.float32)
    pred = (target + 0.1 * torch.randn(target.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    pred.requires_grad_(True)
    loss = 1 - ssim(pred, target)
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    # A step down the gradient improves SSIM: the loss trains.
    with torch.no_grad():
        stepped = pred - 0.02 * pred.grad / pred.grad.abs().max()
    assert ssim(stepped, target).item() > 1 - loss.item()

    at_optimum = target.clone().requires_grad_(True)
    (1 - ssim(at_optimum, target)).backward()
    assert torch.isfinite(at_optimum.grad).all() and at_optimum.grad.abs().max() < 1e-5


def test_ssim_rejects_bad_input():
    image = torch.rand(20, 20, 3)
    with pytest.raises(ValueError, match="too small"):
        ssim(torch.rand(8, 8, 3), torch.rand(8, 8, 3))
    with pytest.raises(ValueError, match="odd"):
        ssim(image, image, window_size=10)
    with pytest.raises(ValueError, match="differ in shape"):
        ssim(image, torch.rand(20, 21, 3))
    with pytest.raises(ValueError, match="reduction"):
        ssim(image, image, reduction="sum")


def test_ssim_forward_and_backward_at_512_is_fast():
    pred = torch.rand(512, 512, 3, requires_grad=True)
    target = torch.rand(512, 512, 3)
    timings = []
    for _ in range(4):
        start = time.perf_counter()
        (1 - ssim(pred, target)).backward()
        timings.append(time.perf_counter() - start)
    median = float(np.median(timings[1:]))
    print(f"SSIM forward + backward, 512x512x3 float32: {1000 * median:.0f} ms (median of 3 after warm-up)")
    assert median < 1.5


def test_box_from_mask():
    mask = np.zeros((40, 60), np.uint8)
    mask[10:20, 25:31] = 255
    assert box_from_mask(mask) == (10, 20, 25, 31)
    assert box_from_mask(mask[..., None]) == (10, 20, 25, 31)
    assert box_from_mask(torch.tensor(mask > 0)) == (10, 20, 25, 31)
    assert box_from_mask(mask, margin=12) == (0, 32, 13, 43)
    y0, y1, x0, x1 = box_from_mask(mask)
    assert mask[y0:y1, x0:x1].all() and mask.sum() == mask[y0:y1, x0:x1].sum()
    assert box_from_mask(np.zeros((5, 5))) is None
    with pytest.raises(ValueError):
        box_from_mask(np.zeros((5, 5, 3)))
