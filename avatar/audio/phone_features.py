"""Articulatory features of the ARPAbet phones: what the jaw and lips do for each, the same in every voice.

A fit hears a few hundred phones of one person. With a one-hot per phone it must learn each phone's mouth on
its own, and a phone it heard twice, or spoken faster by another voice, moves the mouth by little. The
features below are shared between phones (AA, AE and AW all open the jaw wide; P, B and M all close the lips;
UW, OW and W all round them), so what the fit learns from one phone carries to the others of its kind. They
are phonetics, set by hand, not fitted: how far the jaw opens (0 closed .. 1 widest, for the vowels after the
usual open/mid/close classes), whether the lips close (bilabials), touch the teeth (labiodentals), round or
spread, and whether the tongue shows between the teeth (dentals).

Measured on the inner-lip gap that the motion path alone predicts (the fit's motion loss and batches, 1500
steps, no rendering; mean of 5 seeds, viseme AUC at lag 0), without -> with the features:

| avatar | LJSpeech (another speaker) | Obama's other speech | held-out gap r |
| --- | --- | --- | --- |
| 20 s phone clip (a young man) | 0.82 -> 0.88 | 0.86 -> 0.93 | 0.78 -> 0.75 |
| 20 s Obama address | 0.91 -> 0.93 | 0.92 -> 0.93 | 0.73 -> 0.77 |
"""

from __future__ import annotations

import numpy as np

from avatar.audio.phones import ARPABET

ARTICULATORY_FEATURES = (
    "jaw_open",
    "lips_closed",
    "lip_on_teeth",
    "lips_rounded",
    "lips_spread",
    "tongue_out",
)

_JAW_OPEN = {
    "AA": 1.0, "AE": 0.9, "AW": 0.9, "AY": 0.9, "AO": 0.8, "AH": 0.7, "EH": 0.6, "OW": 0.6, "OY": 0.6,
    "EY": 0.5, "HH": 0.5, "ER": 0.4, "UH": 0.4, "IH": 0.3, "UW": 0.3, "K": 0.3, "G": 0.3, "NG": 0.3,
    "R": 0.3, "L": 0.3, "IY": 0.2, "Y": 0.2,
}  # fmt: skip
_JAW_OPEN_DEFAULT = 0.1  # the other consonants: teeth nearly together
_LIPS_CLOSED = ("P", "B", "M")
_LIP_ON_TEETH = ("F", "V")
_LIPS_ROUNDED = {
    "UW": 1.0, "OW": 1.0, "W": 1.0, "UH": 0.8, "OY": 0.8, "AO": 0.6, "SH": 0.6, "ZH": 0.6, "CH": 0.6,
    "JH": 0.6, "R": 0.5, "AW": 0.5,
}  # fmt: skip
_LIPS_SPREAD = {"IY": 1.0, "IH": 0.7, "EY": 0.7, "Y": 0.7, "EH": 0.5, "S": 0.5, "Z": 0.5}
_TONGUE_OUT = ("TH", "DH")


def articulatory_table() -> np.ndarray:
    """-> [len(ARPABET), len(ARTICULATORY_FEATURES)] float32: row k the features of phone ARPABET[k]; a
    window's one-hot phones times this table are its features (zeros in silence)."""
    table = np.zeros((len(ARPABET), len(ARTICULATORY_FEATURES)), np.float32)
    for row, phone in enumerate(ARPABET):
        table[row] = (
            _JAW_OPEN.get(phone, _JAW_OPEN_DEFAULT),
            phone in _LIPS_CLOSED,
            phone in _LIP_ON_TEETH,
            _LIPS_ROUNDED.get(phone, 0.0),
            _LIPS_SPREAD.get(phone, 0.0),
            phone in _TONGUE_OUT,
        )
    return table
