"""The audio -> mouth-motion path: a frame's window of driving features in, the motion of the mouth and jaw
landmarks out.

`MotionPredictor` is one network: an `AudioTokenizer` over the window and a linear head, zero-initialised so
that an untrained predictor says "at rest". A fit hears a few hundred frames of one person, and predictors that
differ only in their random start and the batches they were shown disagree about as much as they err: over 5
seeds of a 20 s phone clip's motion path (no rendering) the held-out correlation of the predicted inner-lip gap
ran from 0.68 to 0.85 and the viseme AUC on another speaker from 0.85 to 0.94. `MotionEnsemble` keeps several,
each trained on its own batches (`DeformationField.member_motions`), and predicts their mean, so a fit depends
less on its luck.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from avatar.model.audio_encoder import AudioTokenizer


class MotionPredictor(nn.Module):
    """[B, W, steps, C] driving-feature windows -> [B, J, 3] landmark motion, metres.

    Args:
        joints: J, the landmarks whose motion is predicted
        channels: C, the driving features' channels per step
        token_width: width of the audio token between the tokenizer and the head
        window: W, frames per token (the frame and its neighbours)
        conv_channels: the tokenizer's convolution channels
        motion_scale: metres per unit output of the head
    """

    def __init__(
        self,
        joints: int,
        channels: int,
        *,
        token_width: int,
        window: int,
        conv_channels: int,
        motion_scale: float,
    ):
        super().__init__()
        self.joints, self.motion_scale = joints, motion_scale
        self.tokenizer = AudioTokenizer(token_width, window, n_mels=channels, channels=conv_channels)
        self.head = nn.Linear(token_width, 3 * joints)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, audio: Tensor) -> Tensor:
        motion = self.head(self.tokenizer(audio)) * self.motion_scale
        return motion.view(audio.shape[0], self.joints, 3)


class MotionEnsemble(nn.ModuleList):
    """`MotionPredictor`s side by side; called, the mean of their motions."""

    def members(self, audio: Tensor) -> Tensor:
        """audio [K, B, W, steps, C], member k's batch at k -> [K, B, J, 3] each member's motion on its batch."""
        return torch.stack([member(batch) for member, batch in zip(self, audio, strict=True)])

    def forward(self, audio: Tensor) -> Tensor:
        """audio [B, W, steps, C] -> [B, J, 3] the members' mean motion on the same batch."""
        return torch.stack([member(audio) for member in self]).mean(dim=0)
