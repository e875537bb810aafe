"""Audio tokens: a log-mel window per video frame -> one vector, smoothed over neighbouring frames.

`AudioEncoder` reads one frame's window ([16 steps, 80 mel bins], see avatar/audio/features.py) with 1-D
convolutions over time, the mel bins as channels. `AudioSmoother` blends the tokens of a frame and its W - 1
neighbours with weights it predicts from them (AD-NeRF's AudioAttNet: 1-D convolutions over the W positions,
a linear layer, a softmax), so the mouth moves smoothly from frame to frame. `AudioTokenizer` chains both.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

LEAKY_SLOPE = 0.02


class AudioEncoder(nn.Module):
    """[B, steps, n_mels] log-mel window -> [B, token_width].

    Convolutions (kernel 3, stride 2, padding 1) halve the steps while they exceed 2 (16 -> 8 -> 4 -> 2); the
    last feature map is flattened into a linear layer.
    """

    def __init__(self, token_width: int, *, n_mels: int = 80, steps: int = 16, channels: int = 64):
        super().__init__()
        self.n_mels, self.steps = n_mels, steps
        layers: list[nn.Module] = []
        in_channels, length = n_mels, steps
        while length > 2:
            layers += [nn.Conv1d(in_channels, channels, 3, stride=2, padding=1), nn.LeakyReLU(LEAKY_SLOPE)]
            in_channels, length = channels, (length + 1) // 2
        self.convolutions = nn.Sequential(*layers)
        self.project = nn.Linear(in_channels * length, token_width)

    def forward(self, windows: Tensor) -> Tensor:
        """windows [B, steps, n_mels] -> tokens [B, token_width]."""
        if windows.shape[-2:] != (self.steps, self.n_mels):
            raise ValueError(
                f"audio windows must be [B, {self.steps}, {self.n_mels}], got {list(windows.shape)}"
            )
        features = self.convolutions(windows.transpose(1, 2))  # [B, channels, length]
        return self.project(features.flatten(1))


class AudioSmoother(nn.Module):
    """[B, W, D] tokens of a frame and its neighbours (the frame in the middle) -> [B, D] weighted sum."""

    def __init__(self, token_width: int, window: int):
        super().__init__()
        if window < 1 or window % 2 == 0:
            raise ValueError(f"the smoothing window must be a positive odd number of frames, got {window}")
        self.window = window
        widths = [token_width, 16, 8, 4, 2, 1]
        layers: list[nn.Module] = []
        for in_channels, out_channels in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv1d(in_channels, out_channels, 3, padding=1), nn.LeakyReLU(LEAKY_SLOPE)]
        self.scores = nn.Sequential(*layers)
        self.mix = nn.Linear(window, window)

    def weights(self, tokens: Tensor) -> Tensor:
        """tokens [B, W, D] -> weights [B, W], non-negative, summing to 1."""
        if tokens.dim() != 3 or tokens.shape[1] != self.window:
            raise ValueError(f"tokens must be [B, {self.window}, D], got {list(tokens.shape)}")
        scores = self.scores(tokens.transpose(1, 2)).squeeze(1)  # [B, W]
        return torch.softmax(self.mix(scores), dim=-1)

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens [B, W, D] -> [B, D]."""
        return torch.einsum("bw,bwd->bd", self.weights(tokens), tokens)


class AudioTokenizer(nn.Module):
    """[B, W, steps, n_mels] log-mel windows of a frame and its neighbours -> [B, token_width]."""

    def __init__(
        self, token_width: int, window: int, *, n_mels: int = 80, steps: int = 16, channels: int = 64
    ):
        super().__init__()
        self.encoder = AudioEncoder(token_width, n_mels=n_mels, steps=steps, channels=channels)
        self.smoother = AudioSmoother(token_width, window)

    @property
    def window(self) -> int:
        return self.smoother.window

    def forward(self, audio: Tensor) -> Tensor:
        """audio [B, W, steps, n_mels] -> [B, token_width]."""
        if audio.dim() != 4 or audio.shape[1] != self.window:
            raise ValueError(f"audio must be [B, {self.window}, steps, n_mels], got {list(audio.shape)}")
        batch, window = audio.shape[:2]
        tokens = self.encoder(audio.flatten(0, 1)).view(batch, window, -1)
        return self.smoother(tokens)
