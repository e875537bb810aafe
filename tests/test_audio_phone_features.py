"""The articulatory features of the phones, and the deformation field hearing them beside the phones."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from avatar.audio.phone_features import ARTICULATORY_FEATURES, articulatory_table
from avatar.audio.phones import ARPABET
from avatar.model.deformation import DeformationConfig, DeformationField, padded_bounds


def _feature(table: np.ndarray, phone: str, name: str) -> float:
    return float(table[ARPABET.index(phone), ARTICULATORY_FEATURES.index(name)])


def test_every_phone_has_features_in_the_unit_range():
    table = articulatory_table()
    assert table.shape == (len(ARPABET), len(ARTICULATORY_FEATURES)) and table.dtype == np.float32
    assert table.min() >= 0.0 and table.max() <= 1.0
    assert (table[:, ARTICULATORY_FEATURES.index("jaw_open")] > 0).all()  # a phone is never silence


def test_the_features_say_what_the_mouth_does():
    table = articulatory_table()
    for closure in ("P", "B", "M"):
        assert _feature(table, closure, "lips_closed") == 1.0
        assert _feature(table, closure, "jaw_open") < _feature(table, "AA", "jaw_open")
    assert sum(_feature(table, phone, "lips_closed") for phone in ARPABET) == 3.0
    assert _feature(table, "AA", "jaw_open") == table[:, 0].max()
    for open_vowel in ("AA", "AE", "AW", "AY"):
        assert _feature(table, open_vowel, "jaw_open") > _feature(table, "IY", "jaw_open")
    assert _feature(table, "UW", "lips_rounded") > _feature(table, "IY", "lips_rounded")
    assert _feature(table, "IY", "lips_spread") > _feature(table, "UW", "lips_spread")
    assert _feature(table, "F", "lip_on_teeth") == 1.0 and _feature(table, "TH", "tongue_out") == 1.0


def _field(config: DeformationConfig) -> DeformationField:
    torch.manual_seed(0)
    return DeformationField(config, *padded_bounds(torch.rand(20, 3) * 0.15), hash_grid_backend="torch")


def test_the_field_hears_the_phones_features_after_them():
    config = DeformationConfig.tiny()
    field = _field(config)
    assert config.articulatory_channels == len(ARTICULATORY_FEATURES)
    first = field.motion_predictors[0].tokenizer.encoder.convolutions[0]
    assert first.in_channels == config.n_mels + config.phone_classes + len(ARTICULATORY_FEATURES)
    audio = torch.randn(3, config.window, 16, config.n_mels)
    phones = torch.zeros(3, config.window, 16, config.phone_classes)
    phones[0, ..., ARPABET.index("AA")] = 1.0
    phones[1, ..., ARPABET.index("M")] = 1.0  # window 2: no phones (silence, or unaligned audio)
    driving = torch.cat([audio, phones], dim=-1)
    features = phones @ torch.from_numpy(articulatory_table())
    torch.testing.assert_close(field.heard(driving), torch.cat([driving, features], dim=-1))
    assert not features[2].any()  # silence hears no features either
    assert "phone_articulation" in field.state_dict()  # a fit renders with the table it was fitted with


def test_fits_without_phones_or_from_before_hear_no_features():
    no_phones = replace(DeformationConfig.tiny(), phone_classes=0)
    assert no_phones.articulatory_channels == 0
    field = _field(no_phones)
    assert field.motion_predictors[0].tokenizer.encoder.convolutions[0].in_channels == no_phones.n_mels
    torch.testing.assert_close(field.heard(torch.ones(1, 9, 16, 80)), torch.ones(1, 9, 16, 80))
    assert "phone_articulation" not in field.state_dict()
    older = DeformationConfig.tiny().to_dict()
    del older["articulatory_features"]  # a run.json written before the features
    restored = DeformationConfig.from_dict(older)
    assert not restored.articulatory_features and restored.articulatory_channels == 0
    assert DeformationConfig.from_dict(DeformationConfig.tiny().to_dict()) == DeformationConfig.tiny()
