from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from avatar.audio.driving import PHONE_CLASSES
from avatar.face.landmarks import MOUTH_AND_JAW
from avatar.model.deformation import (
    DeformationConfig,
    DeformationField,
    Deltas,
    FrameConditions,
    apply_deltas,
    padded_bounds,
)
from avatar.model.gaussians import GaussianSet

SILENCE = -1.628
CHANNELS = 80 + PHONE_CLASSES  # log-mel bands and phone channels of the driving features


@pytest.fixture(autouse=True)
def one_thread():
    """These tensors are small: a second intra-op thread gains nothing and stalls while the other core is busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_field(means: torch.Tensor, **kwargs) -> DeformationField:
    return DeformationField(
        DeformationConfig.tiny(), *padded_bounds(means), hash_grid_backend="torch", **kwargs
    )


def make_conditions(batch: int, window: int = 9, seed: int = 0) -> FrameConditions:
    gen = torch.Generator().manual_seed(seed)
    return FrameConditions(
        audio=torch.randn(batch, window, 16, CHANNELS, generator=gen),
        eye=torch.rand(batch, generator=gen),
        view=torch.nn.functional.normalize(torch.randn(batch, 3, generator=gen), dim=-1),
    )


def randomise_output_layer(field: DeformationField, seed: int = 0) -> None:
    """The zero-initialised layers (the head's last and the mouth motion's) made random."""
    torch.manual_seed(seed)
    for layer in (field.head[-1], *(member.head for member in field.motion_predictors)):
        nn.init.normal_(layer.weight, std=0.1)
        nn.init.normal_(layer.bias, std=0.1)


def random_gaussian_set(n: int, seed: int = 0) -> GaussianSet:
    gen = torch.Generator().manual_seed(seed)
    return GaussianSet(
        means=torch.randn(n, 3, generator=gen) * 0.05,
        quats=torch.nn.functional.normalize(torch.randn(n, 4, generator=gen), dim=-1),
        scales=torch.rand(n, 3, generator=gen) * 0.01 + 1e-4,
        opacities=torch.rand(n, generator=gen),
        colors=torch.rand(n, 3, generator=gen),
    )


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("n", [1, 1000])
def test_shapes_dtypes_and_zero_deltas_at_init(batch, n):
    torch.manual_seed(0)
    means = torch.rand(n, 3) * 0.2
    field = make_field(means)
    deltas, attention = field(means, make_conditions(batch))
    expected = {
        "d_means": (batch, n, 3),
        "d_quats": (batch, n, 4),
        "d_log_scales": (batch, n, 3),
        "d_opacity_logits": (batch, n),
        "d_color_logits": (batch, n, 3),
    }
    for name, shape in expected.items():
        value = getattr(deltas, name)
        assert value.shape == shape and value.dtype == torch.float32, name
        assert torch.equal(value, torch.zeros(shape)), name  # the output layer starts at zero
    assert attention.shape == (batch, n, field.config.heads, 4) and attention.dtype == torch.float32
    torch.testing.assert_close(attention.sum(-1), torch.ones(batch, n, field.config.heads))
    assert bool((attention >= 0).all())


def test_perturbed_attention_weights_vary_and_sum_to_one():
    torch.manual_seed(1)
    means = torch.rand(200, 3) * 0.2
    field = make_field(means)
    randomise_output_layer(field)
    for parameter in field.parameters():
        parameter.data.add_(torch.randn_like(parameter) * 0.05)
    with torch.no_grad():
        _, attention = field(means, make_conditions(2))
    torch.testing.assert_close(attention.sum(-1), torch.ones(2, 200, field.config.heads))
    assert float(attention.std()) > 1e-3  # not uniform: the weights depend on the Gaussian and the frame


def test_position_offsets_are_scaled_to_centimetres():
    torch.manual_seed(2)
    means = torch.rand(10, 3) * 0.2
    field = make_field(means)
    with torch.no_grad():
        field.head[-1].bias.copy_(torch.tensor([1.0] * 3 + [0.0] * 11))
    deltas, _ = field(means, make_conditions(1))
    torch.testing.assert_close(deltas.d_means, torch.full((1, 10, 3), 0.01))


def test_audio_disabled_ignores_the_audio_input():
    torch.manual_seed(3)
    means = torch.rand(64, 3) * 0.2
    conditions = make_conditions(2, seed=1)
    other_audio = FrameConditions(
        audio=torch.full_like(conditions.audio, SILENCE), eye=conditions.eye, view=conditions.view
    )
    for audio_enabled in (True, False):
        torch.manual_seed(4)
        field = make_field(means, audio_enabled=audio_enabled)
        randomise_output_layer(field)
        with torch.no_grad():
            first, _ = field(means, conditions)
            second, _ = field(means, other_audio)
        same = torch.equal(first.d_means, second.d_means) and torch.equal(
            first.d_color_logits, second.d_color_logits
        )
        assert same == (not audio_enabled)
    assert set(make_field(means, audio_enabled=False).state_dict()) == set(make_field(means).state_dict())


def test_gradients_reach_every_parameter_after_one_step():
    torch.manual_seed(5)
    means = torch.rand(300, 3) * 0.2
    field = make_field(means)
    conditions = make_conditions(2)
    gen = torch.Generator().manual_seed(0)
    projection = torch.randn(2, 300, 14, generator=gen)
    optimizer = torch.optim.Adam(field.parameters(), lr=1e-3)

    def toy_loss() -> torch.Tensor:
        deltas, _ = field(means, conditions)
        outputs = torch.cat(
            [
                deltas.d_means,
                deltas.d_quats,
                deltas.d_log_scales,
                deltas.d_opacity_logits[..., None],
                deltas.d_color_logits,
            ],
            dim=-1,
        )
        motion = field.mouth_motion(conditions.audio)  # the audio path's own loss
        return (outputs * projection).sum() + outputs.square().sum() + motion.sum()

    toy_loss().backward()  # only the zero-initialised output layers have a gradient at first
    optimizer.step()
    optimizer.zero_grad()
    toy_loss().backward()
    groups = {
        "hash_grid": 0,
        "query_mlp": 0,
        "motion_predictors": 0,
        "articulation_mlp": 0,
        "eye_mlp": 0,
        "view_mlp": 0,
        "null_token": 0,
    }
    for name, parameter in field.named_parameters():
        assert parameter.grad is not None and float(parameter.grad.abs().sum()) > 0, name
        for group in groups:
            groups[group] += name.startswith(group)
    assert all(groups.values()), groups


def test_learns_audio_dependent_mouth_motion():
    """The mouth motion opens one way for speech and the other way for silence, and the Gaussians at the mouth's
    landmarks follow it."""
    torch.manual_seed(0)
    anchors = torch.rand(len(MOUTH_AND_JAW), 3) * 0.15
    means = anchors[:6].clone()
    field = make_field(means, mouth_anchors=anchors)
    audio = torch.cat([torch.randn(1, 9, 16, CHANNELS), torch.full((1, 9, 16, CHANNELS), SILENCE)])
    conditions = FrameConditions(audio=audio, eye=torch.ones(2), view=torch.tensor([[0.0, 0.0, -1.0]] * 2))
    target = torch.randn(len(MOUTH_AND_JAW), 3) * 0.003
    targets = torch.stack([target, -target])
    optimizer = torch.optim.Adam(field.parameters(), lr=1e-2)
    losses = []
    for _ in range(300):
        motion = field.predicted_motion(audio)
        loss = ((motion - targets) / 0.003).square().mean()
        losses.append(loss.item())
        if losses[-1] < 1e-3 * losses[0]:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[-1] < 1e-3 * losses[0], (len(losses), losses[-1] / losses[0])
    with torch.no_grad():
        torch.testing.assert_close(field.articulation(conditions), targets, atol=3e-4, rtol=0)
        deltas, _ = field(means, conditions)
    speech, silence = deltas.d_means[0], deltas.d_means[1]  # each Gaussian's own landmark weighs most
    assert float(((speech - silence) * (target[:6] - -target[:6])).sum(-1).min()) > 0


def test_the_render_reaches_the_audio_only_through_the_given_or_predicted_motion():
    torch.manual_seed(1)
    means = torch.rand(50, 3) * 0.15
    field = make_field(means, mouth_anchors=torch.rand(len(MOUTH_AND_JAW), 3) * 0.15)
    randomise_output_layer(field)
    conditions = make_conditions(2)
    motion = torch.randn(2, len(MOUTH_AND_JAW), 3) * 0.003
    given = FrameConditions(conditions.audio, conditions.eye, conditions.view, motion=motion)
    other_audio = FrameConditions(
        torch.zeros_like(conditions.audio), conditions.eye, conditions.view, motion=motion
    )
    with torch.no_grad():
        first, _ = field(means, given)
        second, _ = field(means, other_audio)
    torch.testing.assert_close(first.d_means, second.d_means)  # the given motion decides, not the audio
    deltas, _ = field(means, conditions)
    deltas.d_means.sum().backward()
    assert all(p.grad is None for p in field.motion_predictors.parameters())  # the render does not train it
    with pytest.raises(ValueError, match="motion"):
        field(means, FrameConditions(conditions.audio, conditions.eye, conditions.view, motion=motion[:1]))


def test_windows_with_phones_predict_the_mean_of_all_channels_and_the_phones_alone():
    torch.manual_seed(3)
    means = torch.rand(20, 3) * 0.15
    field = make_field(means)
    randomise_output_layer(field)
    n_mels = field.config.n_mels
    audio = make_conditions(3, seed=4).audio
    audio[2, ..., n_mels:] = 0.0  # no phones (silence, or audio the aligner could not read)
    voiceless = audio.clone()
    voiceless[..., :n_mels] = 0.0
    with torch.no_grad():
        predicted = field.predicted_motion(audio)
        whole = field.mouth_motion(audio)
        alone = field.mouth_motion(voiceless)
    torch.testing.assert_close(predicted[:2], 0.5 * (whole[:2] + alone[:2]))
    torch.testing.assert_close(predicted[2], whole[2])
    assert not torch.allclose(whole[:2], alone[:2])
    no_phones = DeformationField(
        replace(DeformationConfig.tiny(), phone_classes=0), *padded_bounds(means), hash_grid_backend="torch"
    )
    randomise_output_layer(no_phones)
    log_mel = audio[..., :n_mels]
    with torch.no_grad():
        torch.testing.assert_close(no_phones.predicted_motion(log_mel), no_phones.mouth_motion(log_mel))


def test_apply_zero_deltas_is_the_identity():
    canonical = random_gaussian_set(40)
    zeros = Deltas(
        d_means=torch.zeros(2, 40, 3),
        d_quats=torch.zeros(2, 40, 4),
        d_log_scales=torch.zeros(2, 40, 3),
        d_opacity_logits=torch.zeros(2, 40),
        d_color_logits=torch.zeros(2, 40, 3),
    )
    for b in range(2):
        deformed = apply_deltas(canonical, zeros, b)
        for name in ("means", "quats", "scales", "opacities", "colors"):
            torch.testing.assert_close(
                getattr(deformed, name), getattr(canonical, name), atol=1e-6, rtol=1e-6
            )


def test_apply_deltas_formulas():
    canonical = random_gaussian_set(30, seed=1)
    gen = torch.Generator().manual_seed(2)
    deltas = Deltas(
        d_means=torch.randn(2, 30, 3, generator=gen) * 0.01,
        d_quats=torch.randn(2, 30, 4, generator=gen) * 0.1,
        d_log_scales=torch.randn(2, 30, 3, generator=gen),
        d_opacity_logits=torch.randn(2, 30, generator=gen) * 3,
        d_color_logits=torch.randn(2, 30, 3, generator=gen) * 3,
    )
    deformed = apply_deltas(canonical, deltas, 1)
    torch.testing.assert_close(deformed.means, canonical.means + deltas.d_means[1])
    torch.testing.assert_close(deformed.quats.norm(dim=-1), torch.ones(30))
    torch.testing.assert_close(
        deformed.quats, torch.nn.functional.normalize(canonical.quats + deltas.d_quats[1], dim=-1)
    )
    torch.testing.assert_close(deformed.scales, canonical.scales * torch.exp(deltas.d_log_scales[1]))
    expected_opacity = torch.sigmoid(
        torch.logit(canonical.opacities.double()) + deltas.d_opacity_logits[1].double()
    )
    torch.testing.assert_close(deformed.opacities, expected_opacity.float(), atol=1e-5, rtol=1e-4)
    expected_colors = torch.sigmoid(
        torch.logit(canonical.colors.double()) + deltas.d_color_logits[1].double()
    )
    torch.testing.assert_close(deformed.colors, expected_colors.float(), atol=1e-5, rtol=1e-4)
    # saturated values stay in [0, 1] and finite
    saturated = GaussianSet(
        means=canonical.means[:2],
        quats=canonical.quats[:2],
        scales=canonical.scales[:2],
        opacities=torch.tensor([0.0, 1.0]),
        colors=torch.tensor([[0.0, 1.0, 0.5]] * 2),
    )
    big = Deltas(
        d_means=torch.zeros(1, 2, 3),
        d_quats=torch.zeros(1, 2, 4),
        d_log_scales=torch.zeros(1, 2, 3),
        d_opacity_logits=torch.full((1, 2), 50.0),
        d_color_logits=torch.full((1, 2, 3), -50.0),
    )
    out = apply_deltas(saturated, big, 0)
    assert torch.equal(out.opacities, torch.tensor([0.0, 1.0]))
    assert bool(torch.isfinite(out.colors).all()) and bool(((out.colors >= 0) & (out.colors <= 1)).all())


def test_config_presets_and_round_trip():
    tiny, default = DeformationConfig.preset("tiny"), DeformationConfig.preset("default")
    assert (tiny.hash_grid.n_levels, tiny.hash_grid.log2_hashmap_size) == (8, 14)
    assert (default.hash_grid.n_levels, default.hash_grid.log2_hashmap_size) == (16, 19)
    for config in (tiny, default):
        assert DeformationConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError):
        DeformationConfig(window=4)
    with pytest.raises(ValueError):
        DeformationConfig.preset("huge")


def test_positions_are_normalised_into_the_padded_box():
    means = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.2, 0.3]])
    field = make_field(means)
    normalised = field.normalized_positions(means)
    assert bool(((normalised > 0) & (normalised < 1)).all())
    torch.testing.assert_close(normalised[0] + normalised[1], torch.ones(3))  # symmetric padding


def test_mouth_motion_from_audio_moves_the_gaussians_near_the_mouth_anchors():
    from avatar.face.landmarks import MOUTH_AND_JAW

    torch.manual_seed(6)
    anchors = torch.rand(len(MOUTH_AND_JAW), 3) * 0.04  # a mouth in one corner of the head
    means = torch.cat([anchors[:5], torch.full((5, 3), 0.2)])  # 5 on the mouth, 5 far from it
    field = make_field(means, mouth_anchors=anchors)
    conditions = make_conditions(2, seed=2)
    with torch.no_grad():
        for member in field.motion_predictors:
            nn.init.normal_(member.head.weight, std=0.5)
        deltas, _ = field(means, conditions)
        motion = field.mouth_motion(conditions.audio)
    assert motion.shape == (2, len(MOUTH_AND_JAW), 3)
    assert not torch.allclose(motion[0], motion[1])  # two frames' audio, two mouths
    assert deltas.d_means[:, :5].abs().amax() > 1e-4
    assert deltas.d_means[:, 5:].abs().amax() == 0.0  # the rest of the head stays (output head still zero)
    torch.testing.assert_close(field.state_dict()["mouth_anchors"], anchors)
    with pytest.raises(ValueError, match="mouth_anchors"):
        make_field(means, mouth_anchors=torch.zeros(3, 3))


def test_the_eye_signal_moves_the_gaussians_near_the_lids_by_the_rig():
    from avatar.face.landmarks import EYELIDS, UPPER_EYELIDS
    from avatar.model.landmark_motion import EyelidRig

    torch.manual_seed(7)
    anchors = torch.rand(len(EYELIDS), 3) * 0.03
    slopes = torch.zeros(len(EYELIDS), 3)
    slopes[: len(UPPER_EYELIDS), 1] = -0.008
    means = torch.cat([anchors[:3], anchors[-3:], torch.full((4, 3), 0.2)])  # upper lid, lower lid, far
    field = make_field(means, eyelids=EyelidRig(anchors, slopes, 0.9))
    conditions = replace(make_conditions(2, seed=3), eye=torch.tensor([0.9, 0.1]))
    with torch.no_grad():
        deltas, _ = field(means, conditions)
    assert deltas.d_means[0].abs().max() == 0.0  # eyes at their mean openness: nothing moves
    assert float(deltas.d_means[1, :3, 1].min()) > 0.002  # closed: the upper lid comes down
    assert deltas.d_means[1, 6:].abs().max() == 0.0  # the rest of the head stays
    restored = make_field(means)
    restored.load_state_dict(field.state_dict())
    torch.testing.assert_close(restored.eyelids.slopes, slopes)
    assert float(restored.eyelids.centre) == pytest.approx(0.9)
    with pytest.raises(ValueError, match="eyelid rig"):
        make_field(means, eyelids=EyelidRig(anchors[:3], slopes[:3], 0.9))


def test_the_mouth_motion_is_the_mean_of_the_motion_predictors():
    torch.manual_seed(5)
    means = torch.rand(20, 3) * 0.15
    field = make_field(means)
    randomise_output_layer(field)
    assert len(field.motion_predictors) == DeformationConfig.tiny().motion_predictors == 3
    audio = make_conditions(4, seed=6).audio
    with torch.no_grad():
        members = field.member_motions(audio.expand(3, *audio.shape))  # each member on the same batch
        assert members.shape == (3, 4, len(MOUTH_AND_JAW), 3)
        torch.testing.assert_close(field.mouth_motion(audio), members.mean(0))
        own = field.member_motions(torch.stack([audio, audio.flip(0), -audio]))  # each on its own batch
        for k, (member, batch) in enumerate(zip(field.motion_predictors, [audio, audio.flip(0), -audio])):
            torch.testing.assert_close(own[k], member(field.heard(batch)))
    assert not torch.allclose(members[0], members[1])  # different random starts
    with pytest.raises(ValueError, match="each of the 3"):
        field.member_motions(audio[None])
    silent = DeformationField(
        DeformationConfig.tiny(), *padded_bounds(means), audio_enabled=False, hash_grid_backend="torch"
    )
    assert not silent.mouth_motion(audio).any()
    assert not silent.member_motions(audio.expand(3, *audio.shape)).any()


def test_a_fit_from_before_the_ensemble_loads_into_one_predictor():
    torch.manual_seed(7)
    means = torch.rand(20, 3) * 0.15
    single = replace(DeformationConfig.tiny(), motion_predictors=1, articulatory_features=False)
    field = DeformationField(single, *padded_bounds(means), hash_grid_backend="torch")
    randomise_output_layer(field)
    older = {  # the keys such a checkpoint holds
        key.replace("motion_predictors.0.tokenizer.", "audio_tokenizer.").replace(
            "motion_predictors.0.head.", "mouth_motion_head."
        ): value
        for key, value in field.state_dict().items()
    }
    assert "audio_tokenizer.encoder.project.weight" in older and "mouth_motion_head.weight" in older
    config = single.to_dict()
    del config["motion_predictors"], config["articulatory_features"]  # a run.json from before either
    restored = DeformationField(
        DeformationConfig.from_dict(config), *padded_bounds(means), hash_grid_backend="torch"
    )
    restored.load_state_dict(older)
    audio = make_conditions(2, seed=8).audio[..., : 80 + PHONE_CLASSES]
    with torch.no_grad():
        torch.testing.assert_close(restored.predicted_motion(audio), field.predicted_motion(audio))
    with pytest.raises(ValueError, match="motion_predictors"):
        replace(DeformationConfig.tiny(), motion_predictors=0)
