"""The deformation field: per-frame offsets of every canonical Gaussian, driven by audio, eyes and viewpoint.

For N canonical Gaussians and a batch of B frames:

    canonical means [N, 3] --bounding box--> [0, 1]^3 --hash grid--> [N, L*F] --MLP--> queries [N, Dq]
    audio [B, W, 16, C]  --K x (AudioTokenizer -> Linear, zero-initialised), mean--> mouth motion [B, J, 3]
                         (C = 80 log-mel bands + the phone channels, avatar/audio/driving.py, heard with
                         the phones' articulatory features, avatar/audio/phone_features.py; the K motion
                         predictors of avatar/model/motion_predictor.py; the motion of the mouth/jaw
                         landmarks; zero when audio is disabled)
    mouth motion         --MLP-->            articulation token [B, Dc]
    eye [B]              --MLP-->            eye token [B, Dc]
    view [B, 3]          --MLP-->            view token [B, Dc]
                                             null token [Dc], learned (lets a Gaussian attend to nothing)
    SpatialAudioAttention(queries, tokens [B, 4, Dc]) -> [B, N, hidden], weights [B, N, heads, 4]
    head: LeakyReLU(attention + W queries) -> Linear -> LeakyReLU -> Linear (zero-initialised) -> [B, N, 14]
    the mouth motion is also carried to the Gaussians near its landmarks (`skin_offsets`; each lip's
    Gaussians follow only that lip's landmarks, `lip_sides`, so a closure closes) and added to the
    position offsets; so is the eyelids' motion, a line in the eye openness measured from the tracking
    (`EyelidRig`), so that the rendered lids close when the eye signal does

The head's first layer sees the attention output and the Gaussian's own features (a concatenation followed by
one linear layer, computed as a sum so the [N, Dq] part is done once for all B). Its last layer starts at
zero, so an untrained field returns exactly zero deltas. The 14 outputs, times the config's offset scales,
are the `Deltas`; `apply_deltas` turns canonical Gaussians and deltas into the frame's Gaussians.

Audio reaches the Gaussians only through the mouth motion, a bottleneck of a few dozen numbers that the fit
supervises with the tracked landmark motion (avatar/model/landmark_motion.py): audio -> articulation is
learned from tracking, articulation -> appearance (the lips and what shows between them, by the attention head)
from pixels. The render's gradients stop at the motion, and a training frame may be rendered with its
tracked motion in place of the predicted one (`FrameConditions.motion`), so the appearance is learned from
true mouth shapes; new audio then only has to produce a plausible motion, not a token like the capture's.
The landmarks (`mouth_anchors`, [J, 3] in the canonical head) and the eyelid rig (`eyelid_anchors`,
`eyelid_slopes` [K, 3], `eye_centre`) are buffers, stored in checkpoints.

Canonical means reach the field detached: positions are optimised by the rendering loss through the
Gaussians themselves, not through the hash grid's (noisy) spatial gradient.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avatar.audio.driving import PHONE_CLASSES
from avatar.audio.phone_features import ARTICULATORY_FEATURES, articulatory_table
from avatar.face.landmarks import (
    EYELIDS,
    INNER_LIP_LOWER,
    INNER_LIP_UPPER,
    LOWER_LIP,
    MOUTH_AND_JAW,
    UPPER_LIP,
)
from avatar.model.audio_encoder import LEAKY_SLOPE
from avatar.model.encoding.hash_grid import HashGridConfig
from avatar.model.encoding.select import make_hash_grid
from avatar.model.gaussians import GaussianSet
from avatar.model.landmark_motion import EyelidRig, lip_sides, skin_offsets
from avatar.model.motion_predictor import MotionEnsemble, MotionPredictor
from avatar.model.spatial_audio_attention import SpatialAudioAttention

NUM_OUTPUTS = 14  # means 3, quats 4, log scales 3, opacity 1, colour 3
BOUNDS_PADDING = 0.1  # each side of the canonical bounding box grows by this fraction of its size
# rows of the inner lip curves, corner to corner, in `mouth_anchors` and the mouth motion ([B, J, 3]); between
# the corners, row k of one faces row k of the other
INNER_LIP_UPPER_ROWS = [MOUTH_AND_JAW.index(i) for i in INNER_LIP_UPPER]
INNER_LIP_LOWER_ROWS = [MOUTH_AND_JAW.index(i) for i in INNER_LIP_LOWER]
# the facing pairs of those rows between the corners (the corners touch and never part)
FACING_LIP_ROWS = (INNER_LIP_UPPER_ROWS[1:-1], INNER_LIP_LOWER_ROWS[1:-1])
# -1 on the upper lip, +1 on the lower one, 0 for the corners, jaw, chin and cheeks (`lip_sides`)
_ANCHOR_LIP_SIDES = [(-1.0 if i in UPPER_LIP else 1.0 if i in LOWER_LIP else 0.0) for i in MOUTH_AND_JAW]


@dataclass(frozen=True)
class DeformationConfig:
    """Sizes of the deformation field; the defaults are the GPU preset, `tiny()` the CPU one."""

    hash_grid: HashGridConfig = field(
        default_factory=lambda: HashGridConfig(
            n_levels=16,
            n_features_per_level=2,
            log2_hashmap_size=19,
            base_resolution=16,
            per_level_scale=2 ** (7 / 15),
        )
    )  # resolutions 16 .. 2048 over the padded box (~0.33 m for a head): finest cell ~0.16 mm
    feature_width: int = 64  # Dq, per-Gaussian query features
    token_width: int = 64  # Dc, condition tokens
    heads: int = 4
    window: int = 9  # W, audio frames per token (the frame and 4 on each side)
    audio_channels: int = 64  # AudioEncoder convolution channels
    condition_hidden: int = 32  # hidden width of the eye and view MLPs
    hidden: int = 128  # width of the output head
    position_offset_scale: float = 0.01  # metres per unit output: 1 cm
    rotation_offset_scale: float = 0.1  # added to the unit quaternion: ~0.2 rad per unit output
    log_scale_offset_scale: float = 0.1  # scale x e^0.1 per unit output
    opacity_offset_scale: float = 1.0  # logit units per unit output
    color_offset_scale: float = 1.0  # logit units per unit output
    mouth_motion_scale: float = 0.005  # metres per unit output of the mouth-motion head
    mouth_skinning_sigma: float = 0.006  # metres: reach of a landmark's motion (`skin_offsets`)
    mouth_interpolation_sigma: float | None = 0.002  # metres: within the reach, whose motion a Gaussian takes
    eyelid_skinning_sigma: float = 0.004  # metres: reach of a lid landmark's motion (lids ~10 mm apart)
    sided_lips: bool = True  # each lip's Gaussians follow only their own lip's landmarks (`lip_sides`)
    n_mels: int = 80  # log-mel bands of the audio windows
    phone_classes: int = PHONE_CLASSES  # phone channels after them (avatar/audio/driving.py); 0: none
    articulatory_features: bool = True  # the phones' articulatory features heard beside them (phone_features)
    motion_predictors: int = 3  # audio -> mouth-motion networks; their mean drives the mouth

    def __post_init__(self) -> None:
        if self.window < 1 or self.window % 2 == 0:
            raise ValueError(f"window must be a positive odd number of frames, got {self.window}")
        if self.phone_classes not in (0, PHONE_CLASSES):
            raise ValueError(f"phone_classes must be 0 or {PHONE_CLASSES}, got {self.phone_classes}")
        for name in (
            "feature_width",
            "token_width",
            "heads",
            "audio_channels",
            "condition_hidden",
            "hidden",
            "motion_predictors",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    @staticmethod
    def tiny() -> DeformationConfig:
        """The CPU preset: 8 levels x 2 features, 2^14 rows, resolutions 16 .. 512 (finest cell ~0.65 mm);
        narrow layers."""
        return DeformationConfig(
            hash_grid=HashGridConfig(
                n_levels=8,
                n_features_per_level=2,
                log2_hashmap_size=14,
                base_resolution=16,
                per_level_scale=2 ** (5 / 7),
            ),
            feature_width=32,
            token_width=32,
            heads=4,
            audio_channels=32,
            condition_hidden=16,
            hidden=64,
        )

    @staticmethod
    def preset(name: str) -> DeformationConfig:
        """The sizes of the fit preset `name` (`tiny` or `default`)."""
        presets = {"tiny": DeformationConfig.tiny, "default": DeformationConfig}
        if name not in presets:
            raise ValueError(f"unknown deformation preset {name!r}; use one of {', '.join(presets)}")
        return presets[name]()

    @property
    def articulatory_channels(self) -> int:
        """How many channels of articulatory features the audio tokenizer hears after the phones."""
        return len(ARTICULATORY_FEATURES) if self.articulatory_features and self.phone_classes else 0

    def to_dict(self) -> dict:
        """Plain JSON-able values; `from_dict` inverts it."""
        return asdict(self)

    @staticmethod
    def from_dict(values: dict) -> DeformationConfig:
        values = dict(values)
        values.setdefault("sided_lips", False)  # fits from before sided lips render as they were fitted
        values.setdefault("mouth_interpolation_sigma", None)  # and those from before the narrow interpolation
        values.setdefault("articulatory_features", False)  # and those that heard the phones alone
        values.setdefault("motion_predictors", 1)  # and those with one motion predictor
        values["hash_grid"] = HashGridConfig(**values["hash_grid"])
        return DeformationConfig(**values)


@dataclass(frozen=True)
class FrameConditions:
    """What drives one batch of frames."""

    audio: (
        Tensor  # [B, W, 16, C] driving features of each frame and its W - 1 neighbours (frame in the middle)
    )
    eye: Tensor  # [B] eye openness, 1 open, 0 closed
    view: Tensor  # [B, 3] unit vector from the head origin to the camera, head frame
    motion: Tensor | None = None  # [B, J, 3] tracked mouth motion to render instead of the audio's (training)

    @property
    def batch_size(self) -> int:
        return self.eye.shape[0]

    def to(self, device: torch.device | str) -> FrameConditions:
        return FrameConditions(
            audio=self.audio.to(device),
            eye=self.eye.to(device),
            view=self.view.to(device),
            motion=None if self.motion is None else self.motion.to(device),
        )


@dataclass(frozen=True)
class Deltas:
    """Per-frame changes of every Gaussian (see `apply_deltas` for how each is applied)."""

    d_means: Tensor  # [B, N, 3] metres
    d_quats: Tensor  # [B, N, 4] added to the unit quaternion (w, x, y, z)
    d_log_scales: Tensor  # [B, N, 3]
    d_opacity_logits: Tensor  # [B, N]
    d_color_logits: Tensor  # [B, N, 3]

    @property
    def batch_size(self) -> int:
        return self.d_means.shape[0]


def apply_deltas(canonical: GaussianSet, deltas: Deltas, batch_index: int) -> GaussianSet:
    """The Gaussians of batch item `batch_index`: canonical Gaussians changed by the deltas.

        means     = means + d_means
        quats     = normalise(quats + d_quats)            (quats unit already)
        scales    = scales * exp(d_log_scales)
        opacities = sigmoid(logit(opacities) + d_opacity_logits)
        colors    = sigmoid(logit(colors) + d_color_logits)

    The sigmoid-of-shifted-logit is evaluated as p / (p + (1 - p) e^-d) (the odds times e^d), which needs no
    logit of p and stays exact at p = 0 and p = 1.
    """
    b = batch_index
    return GaussianSet(
        means=canonical.means + deltas.d_means[b],
        quats=F.normalize(canonical.quats + deltas.d_quats[b], dim=-1),
        scales=canonical.scales * torch.exp(deltas.d_log_scales[b]),
        opacities=_shift_logit(canonical.opacities, deltas.d_opacity_logits[b]),
        colors=_shift_logit(canonical.colors, deltas.d_color_logits[b]),
    )


def _shift_logit(probabilities: Tensor, delta: Tensor) -> Tensor:
    """sigmoid(logit(p) + delta) for p in [0, 1]."""
    return probabilities / (probabilities + (1.0 - probabilities) * torch.exp(-delta))


def padded_bounds(means: Tensor, padding: float = BOUNDS_PADDING) -> tuple[Tensor, Tensor]:
    """The bounding box [3], [3] of `means` [N, 3] grown by `padding` times its size on each side (at least 1 cm)."""
    low, high = means.detach().amin(0), means.detach().amax(0)
    margin = ((high - low) * padding).clamp_min(0.01)
    return low - margin, high + margin


_SINGLE_PREDICTOR_KEYS = {
    "audio_tokenizer.": "motion_predictors.0.tokenizer.",
    "mouth_motion_head.": "motion_predictors.0.head.",
}


def _single_predictor_keys(state_dict: dict, prefix: str, *args: object) -> None:
    """Renames a checkpoint's keys from before the motion ensemble (one `audio_tokenizer` and
    `mouth_motion_head`) to its first member, so such fits load as they were fitted."""
    for key in [key for key in state_dict if key.startswith(prefix)]:
        for old, new in _SINGLE_PREDICTOR_KEYS.items():
            if key.startswith(prefix + old):
                state_dict[prefix + new + key[len(prefix + old) :]] = state_dict.pop(key)


def _mlp(widths: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if index < len(widths) - 2:
            layers.append(nn.LeakyReLU(LEAKY_SLOPE))
    return nn.Sequential(*layers)


class DeformationField(nn.Module):
    """Canonical means + frame conditions -> per-Gaussian deltas (module docstring).

    Args:
        config: sizes and offset scales
        bounds_min, bounds_max: [3] the box mapped to [0, 1]^3 for the hash grid (see `padded_bounds`);
            positions outside it are clamped. Stored as buffers, so a checkpoint restores them.
        audio_enabled: False replaces the predicted mouth motion by zeros (the no-audio ablation); the motion
            predictors are still built, so checkpoints of both variants have the same keys.
        hash_grid_backend: "auto", "torch", "cuda" or "tcnn" (see `avatar.model.encoding.select.make_hash_grid`; "auto"
            picks a CUDA grid only on a CUDA `device`)
        device: where the module lives; default the device of `bounds_min`
    """

    def __init__(
        self,
        config: DeformationConfig,
        bounds_min: Tensor,
        bounds_max: Tensor,
        *,
        mouth_anchors: Tensor | None = None,
        eyelids: EyelidRig | None = None,
        audio_enabled: bool = True,
        hash_grid_backend: str = "auto",
        device: torch.device | str | None = None,
    ):
        super().__init__()
        self.config = config
        self.audio_enabled = audio_enabled
        bounds_min = torch.as_tensor(bounds_min, dtype=torch.float32)
        bounds_max = torch.as_tensor(bounds_max, dtype=torch.float32)
        if bounds_min.shape != (3,) or bounds_max.shape != (3,) or not bool((bounds_max > bounds_min).all()):
            raise ValueError(f"need bounds_min < bounds_max, each [3]; got {bounds_min} and {bounds_max}")
        self.register_buffer("bounds_min", bounds_min.clone())
        self.register_buffer("bounds_max", bounds_max.clone())
        if mouth_anchors is None:
            mouth_anchors = torch.zeros(len(MOUTH_AND_JAW), 3)  # a placeholder for `load_state_dict`
        if mouth_anchors.shape != (len(MOUTH_AND_JAW), 3):
            raise ValueError(
                f"mouth_anchors must be [{len(MOUTH_AND_JAW)}, 3], got {list(mouth_anchors.shape)}"
            )
        self.register_buffer("mouth_anchors", torch.as_tensor(mouth_anchors, dtype=torch.float32).clone())
        if eyelids is None:  # placeholders for `load_state_dict`; zero slopes: lids that never move
            eyelids = EyelidRig(torch.zeros(len(EYELIDS), 3), torch.zeros(len(EYELIDS), 3), 1.0)
        if eyelids.anchors.shape != (len(EYELIDS), 3) or eyelids.slopes.shape != (len(EYELIDS), 3):
            raise ValueError(
                f"the eyelid rig must be [{len(EYELIDS)}, 3], got {list(eyelids.anchors.shape)} "
                f"and {list(eyelids.slopes.shape)}"
            )
        self.register_buffer("eyelid_anchors", eyelids.anchors.float().clone())
        self.register_buffer("eyelid_slopes", eyelids.slopes.float().clone())
        self.register_buffer("eye_centre", torch.tensor(float(eyelids.centre)))
        device = torch.device(device) if device is not None else bounds_min.device
        self.hash_grid = make_hash_grid(config.hash_grid, hash_grid_backend, device=device)
        self.query_mlp = _mlp([config.hash_grid.n_output_dims, config.feature_width, config.feature_width])
        self.motion_predictors = MotionEnsemble(
            MotionPredictor(
                len(MOUTH_AND_JAW),
                config.n_mels + config.phone_classes + config.articulatory_channels,
                token_width=config.token_width,
                window=config.window,
                conv_channels=config.audio_channels,
                motion_scale=config.mouth_motion_scale,
            )
            for _ in range(config.motion_predictors)
        )
        self._register_load_state_dict_pre_hook(_single_predictor_keys)
        if config.articulatory_channels:  # stored: a fit renders with the table it was fitted with
            self.register_buffer("phone_articulation", torch.from_numpy(articulatory_table()))
        self.articulation_mlp = _mlp([3 * len(MOUTH_AND_JAW), config.condition_hidden, config.token_width])
        self.eye_mlp = _mlp([1, config.condition_hidden, config.token_width])
        self.view_mlp = _mlp([3, config.condition_hidden, config.token_width])
        self.null_token = nn.Parameter(torch.randn(config.token_width) * 0.1)
        self.attention = SpatialAudioAttention(
            config.feature_width, config.token_width, config.hidden, config.heads
        )
        self.query_to_hidden = nn.Linear(config.feature_width, config.hidden, bias=False)
        self.head = _mlp([config.hidden, config.hidden, NUM_OUTPUTS])
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)
        offset_scales = (
            [config.position_offset_scale] * 3
            + [config.rotation_offset_scale] * 4
            + [config.log_scale_offset_scale] * 3
            + [config.opacity_offset_scale]
            + [config.color_offset_scale] * 3
        )
        self.register_buffer("output_scales", torch.tensor(offset_scales), persistent=False)
        self.register_buffer("anchor_lip_sides", torch.tensor(_ANCHOR_LIP_SIDES), persistent=False)
        self.to(device)

    def normalized_positions(self, means: Tensor) -> Tensor:
        """means [N, 3] -> [N, 3] in [0, 1]^3 over the bounding box (not clamped)."""
        return (means - self.bounds_min) / (self.bounds_max - self.bounds_min)

    def queries(self, canonical_means: Tensor) -> Tensor:
        """canonical_means [N, 3] -> per-Gaussian query features [N, Dq]."""
        encoded = self.hash_grid(self.normalized_positions(canonical_means.detach()))
        return self.query_mlp(encoded.float())

    def heard(self, audio: Tensor) -> Tensor:
        """audio [B, W, steps, C] driving features -> [B, W, steps, C + A] what the motion predictors hear:
        with `articulatory_features`, the phones' features (`avatar.audio.phone_features`) after them."""
        audio = audio.float()
        if not self.config.articulatory_channels:
            return audio
        phones = audio[..., self.config.n_mels :]
        return torch.cat([audio, phones @ self.phone_articulation], dim=-1)

    def member_motions(self, audio: Tensor) -> Tensor:
        """audio [K, B, W, steps, C], a batch for each of the K motion predictors -> [K, B, J, 3] the motion
        each predicts from its own batch (zeros when audio is disabled), metres, head frame: what the motion
        loss trains."""
        if audio.shape[0] != len(self.motion_predictors):
            raise ValueError(f"need a batch for each of the {len(self.motion_predictors)} motion predictors")
        if not self.audio_enabled:
            return self.mouth_anchors.new_zeros(*audio.shape[:2], len(MOUTH_AND_JAW), 3)
        return self.motion_predictors.members(self.heard(audio))

    def mouth_motion(self, audio: Tensor) -> Tensor:
        """audio [B, W, steps, C] -> [B, J, 3] the predictors' mean motion of the `MOUTH_AND_JAW` (zeros when
        audio is disabled), metres, head frame."""
        if not self.audio_enabled:
            return self.mouth_anchors.new_zeros(audio.shape[0], len(MOUTH_AND_JAW), 3)
        return self.motion_predictors(self.heard(audio))

    def predicted_motion(self, audio: Tensor) -> Tensor:
        """audio [B, W, steps, C] -> [B, J, 3] the mouth motion the audio predicts.

        Where a window has phones, the mean of the prediction from all its channels and from its phones alone
        (the log-mel bands zeroed, as `TrainSettings.log_mel_dropout` trains). A voice the fit has not heard
        pulls the log-mel path off, the person's own voice helps it: measured on the predicted inner-lip gap
        of a 20 s phone clip's avatar, the viseme AUC on another speaker is 0.63 from all channels, 0.82 from
        the phones alone and 0.77 from the mean, and the correlation with the tracked gap on the clip's own
        held-out frames 0.71, 0.67 and 0.71. Windows without phones (silence, audio that could not be
        aligned) use all channels: the language-independent path."""
        motion = self.mouth_motion(audio)
        has_phones = self.windows_with_phones(audio)
        if not bool(has_phones.any()):
            return motion
        n_mels = self.config.n_mels
        voiceless = torch.cat([torch.zeros_like(audio[..., :n_mels]), audio[..., n_mels:]], dim=-1)
        alone = self.mouth_motion(voiceless)
        return torch.where(has_phones[:, None, None], 0.5 * (motion + alone), motion)

    def windows_with_phones(self, audio: Tensor) -> Tensor:
        """audio [B, W, steps, C] -> [B] bool: the window has a phone somewhere (False for every window when
        the model hears no phones)."""
        phones = audio[..., self.config.n_mels :]
        if phones.shape[-1] == 0:
            return torch.zeros(audio.shape[0], dtype=torch.bool, device=audio.device)
        return phones.flatten(1).abs().amax(dim=1) > 0

    @property
    def eyelids(self) -> EyelidRig:
        return EyelidRig(self.eyelid_anchors, self.eyelid_slopes, self.eye_centre)  # the buffers: no sync

    def articulation(self, conditions: FrameConditions) -> Tensor:
        """-> [B, J, 3] the mouth motion to render: `conditions.motion` when given, else the audio's
        `predicted_motion` (detached: the render does not train the audio path)."""
        if conditions.motion is not None:
            if conditions.motion.shape != (conditions.batch_size, len(MOUTH_AND_JAW), 3):
                raise ValueError(
                    f"motion must be [B, {len(MOUTH_AND_JAW)}, 3], got {list(conditions.motion.shape)}"
                )
            return conditions.motion.float()
        return self.predicted_motion(conditions.audio).detach()

    def tokens(self, conditions: FrameConditions, motion: Tensor) -> Tensor:
        """conditions and their `articulation` [B, J, 3] -> [B, 4, Dc]: articulation, eye, view, null."""
        batch = conditions.batch_size
        if conditions.eye.shape != (batch,) or conditions.view.shape != (batch, 3):
            raise ValueError(
                f"eye must be [B] and view [B, 3] with the same B, got {list(conditions.eye.shape)} "
                f"and {list(conditions.view.shape)}"
            )
        if conditions.audio.shape[0] != batch:
            raise ValueError(f"audio has batch size {conditions.audio.shape[0]}, eye has {batch}")
        articulation = self.articulation_mlp((motion / self.config.mouth_motion_scale).flatten(1))
        eye = self.eye_mlp(conditions.eye.float()[:, None])
        view = self.view_mlp(conditions.view.float())
        null = self.null_token.expand(batch, -1)
        return torch.stack([articulation, eye, view, null], dim=1)

    def forward(self, canonical_means: Tensor, conditions: FrameConditions) -> tuple[Deltas, Tensor]:
        """Deltas of every Gaussian for every frame of the batch.

        Args:
            canonical_means: Tensor  # [N, 3] head frame, metres (detached inside)
            conditions: FrameConditions with batch size B
        Returns:
            deltas: Deltas  # each [B, N, ...]
            attention: Tensor  # [B, N, heads, 4] weights over (articulation, eye, view, null), summing to 1
        """
        queries = self.queries(canonical_means)  # [N, Dq]
        motion = self.articulation(conditions)
        tokens = self.tokens(conditions, motion)
        attended, weights = self.attention(queries, tokens)  # [B, N, hidden]
        hidden = F.leaky_relu(attended + self.query_to_hidden(queries), LEAKY_SLOPE)
        outputs = self.head(hidden) * self.output_scales  # [B, N, 14]
        d_means, d_quats, d_log_scales, d_opacity, d_colors = outputs.split([3, 4, 3, 1, 3], dim=-1)
        means = canonical_means.detach()
        mouth = self.skinned_mouth(means, motion)
        lids = skin_offsets(
            means, self.eyelid_anchors, self.eyelids.motion(conditions.eye), self.config.eyelid_skinning_sigma
        )
        deltas = Deltas(
            d_means=d_means + mouth + lids,
            d_quats=d_quats,
            d_log_scales=d_log_scales,
            d_opacity_logits=d_opacity.squeeze(-1),
            d_color_logits=d_colors,
        )
        return deltas, weights

    def skinned_mouth(self, means: Tensor, motion: Tensor) -> Tensor:
        """means [N, 3] canonical, motion [B, J, 3] -> [B, N, 3] the Gaussians' share of the mouth motion."""
        config = self.config
        sides = None
        if config.sided_lips:
            sides = lip_sides(
                means, self.mouth_anchors[INNER_LIP_UPPER_ROWS], self.mouth_anchors[INNER_LIP_LOWER_ROWS]
            )
        return skin_offsets(
            means,
            self.mouth_anchors,
            motion,
            config.mouth_skinning_sigma,
            gaussian_sides=sides,
            anchor_sides=None if sides is None else self.anchor_lip_sides,
            interpolation_sigma=config.mouth_interpolation_sigma,
        )

    def extra_repr(self) -> str:
        return f"audio_enabled={self.audio_enabled}"
