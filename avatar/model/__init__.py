"""The audio-driven Gaussian head: canonical Gaussians, their initialisation, the hash grid, the deformation field."""

from __future__ import annotations

from avatar.model.audio_encoder import AudioEncoder, AudioSmoother, AudioTokenizer
from avatar.model.deformation import (
    DeformationConfig,
    DeformationField,
    Deltas,
    FrameConditions,
    apply_deltas,
    padded_bounds,
)
from avatar.model.gaussians import CanonicalGaussians, GaussianSet, RowChange, inverse_sigmoid
from avatar.model.head_init import colors_from_frame, init_head_gaussians
from avatar.model.spatial_audio_attention import SpatialAudioAttention
from avatar.model.talking_head import TalkingHead, frame_conditions

__all__ = [
    "AudioEncoder",
    "AudioSmoother",
    "AudioTokenizer",
    "CanonicalGaussians",
    "DeformationConfig",
    "DeformationField",
    "Deltas",
    "FrameConditions",
    "GaussianSet",
    "RowChange",
    "SpatialAudioAttention",
    "TalkingHead",
    "apply_deltas",
    "colors_from_frame",
    "frame_conditions",
    "init_head_gaussians",
    "inverse_sigmoid",
    "padded_bounds",
]
