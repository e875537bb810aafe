from __future__ import annotations

import pytest
import torch

from avatar.model.audio_encoder import AudioEncoder, AudioSmoother, AudioTokenizer

SILENCE = -1.628


@pytest.fixture(autouse=True)
def one_thread():
    """These tensors are small: a second intra-op thread gains nothing and stalls while the other core is busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("batch", [1, 3])
def test_shapes(batch):
    torch.manual_seed(0)
    encoder = AudioEncoder(24, channels=16)
    assert encoder(torch.randn(batch, 16, 80)).shape == (batch, 24)
    smoother = AudioSmoother(24, window=9)
    tokens = torch.randn(batch, 9, 24)
    weights = smoother.weights(tokens)
    assert weights.shape == (batch, 9) and bool((weights >= 0).all())
    torch.testing.assert_close(weights.sum(-1), torch.ones(batch))
    torch.testing.assert_close(smoother(tokens), torch.einsum("bw,bwd->bd", weights, tokens))
    tokenizer = AudioTokenizer(24, window=9, channels=16)
    out = tokenizer(torch.randn(batch, 9, 16, 80))
    assert out.shape == (batch, 24) and out.dtype == torch.float32


def test_encoder_distinguishes_speech_from_silence():
    torch.manual_seed(0)
    encoder = AudioEncoder(16, channels=16)
    with torch.no_grad():
        speech = encoder(torch.randn(1, 16, 80))
        silence = encoder(torch.full((1, 16, 80), SILENCE))
    assert float((speech - silence).norm()) > 1e-3


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        AudioSmoother(8, window=4)
    with pytest.raises(ValueError):
        AudioEncoder(8)(torch.randn(2, 80, 16))
    with pytest.raises(ValueError):
        AudioTokenizer(8, window=5)(torch.randn(2, 3, 16, 80))


def test_smoother_output_changes_smoothly_when_the_window_slides():
    torch.manual_seed(0)
    window, width, frames = 9, 16, 80
    smoother = AudioSmoother(width, window)
    tokens = torch.randn(frames, width)  # independent tokens: the worst case for smoothness
    windows = tokens.unfold(0, window, 1).permute(
        0, 2, 1
    )  # [frames - W + 1, W, D], window t = frames t..t+W-1
    with torch.no_grad():
        smoothed = smoother(windows)
    raw_steps = (
        tokens[window // 2 + 1 : frames - window // 2] - tokens[window // 2 : frames - window // 2 - 1]
    ).norm(dim=-1)
    smoothed_steps = (smoothed[1:] - smoothed[:-1]).norm(dim=-1)
    assert float(smoothed_steps.mean()) < 0.5 * float(raw_steps.mean())
    # sliding by one frame changes the output by less than replacing the window altogether
    far_steps = (smoothed[window:] - smoothed[:-window]).norm(dim=-1)
    assert float(smoothed_steps.mean()) < 0.6 * float(far_steps.mean())
