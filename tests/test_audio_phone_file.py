"""Phones read from a JSON file (`avatar eval --phones`): what is read, and what is refused."""

from __future__ import annotations

import json

import pytest

from avatar.audio.phone_file import read_phone_file
from avatar.audio.phones import PhoneSegment
from avatar.core.errors import AvatarError


def _write(path, entries) -> None:
    path.write_text(json.dumps(entries), encoding="utf-8")


def test_a_phone_list_is_read_with_its_labels_upper_cased(tmp_path):
    path = tmp_path / "phones.json"
    _write(
        path,
        [
            {"phone": "m", "start_s": 0.1, "end_s": 0.2, "espeak": "m"},
            {"phone": "AA1", "start_s": 0.2, "end_s": 0.35},
            {"phone": "T", "start_s": 0.35, "end_s": 1},
        ],
    )
    speech = read_phone_file(path)
    assert speech.note is None
    assert speech.phones == (
        PhoneSegment("M", 0.1, 0.2),
        PhoneSegment("AA1", 0.2, 0.35),
        PhoneSegment("T", 0.35, 1.0),
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not readable JSON"),
        ("{}", "non-empty list"),
        ("[]", "non-empty list"),
        ('[{"phone": "AA", "start_s": 0.2}]', "phone 0"),
        ('[{"phone": "AA", "start_s": 0.3, "end_s": 0.2}]', "phone 0"),
        ('[{"phone": "", "start_s": 0.1, "end_s": 0.2}]', "phone 0"),
        ('[{"phone": "AA", "start_s": "0.1", "end_s": 0.2}]', "phone 0"),
        ('[{"phone": "AA", "start_s": 0.1, "end_s": Infinity}]', "phone 0"),
        ('[{"phone": "AA", "start_s": -0.1, "end_s": 0.2}]', "phone 0"),
        (
            '[{"phone": "AA", "start_s": 0.5, "end_s": 0.6}, {"phone": "M", "start_s": 0.1, "end_s": 0.2}]',
            "phone 1",
        ),
        ('["AA"]', "phone 0"),
    ],
)
def test_a_bad_phone_file_is_refused_naming_the_file_and_the_entry(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(AvatarError, match=message) as error:
        read_phone_file(path)
    assert str(path) in str(error.value) and "JSON list" in str(error.value)


def test_a_missing_phone_file_is_named(tmp_path):
    with pytest.raises(AvatarError, match="does not exist") as error:
        read_phone_file(tmp_path / "nowhere.json")
    assert "nowhere.json" in str(error.value)
