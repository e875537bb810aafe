"""A clip's phones read from a JSON file, for speech that pocketsphinx's en-US models cannot align.

`avatar eval --audio SPEECH --phones PHONES.json` scores the mouth against these phones instead of the
aligner's: speech in another language (phones from that language's aligner, or from the synthesiser that spoke
it), or English whose alignment is known. The file is a list of objects, one per phone, in time order:

    [{"phone": "M", "start_s": 0.42, "end_s": 0.51}, {"phone": "AA", "start_s": 0.51, "end_s": 0.66}, ...]

Times are seconds from the start of the audio. The labels are ARPAbet as `avatar.audio.phones` writes them
(stress digits and case ignored); the lip-sync score reads the open vowels (AA AE AH AO AW AY EH EY) and the
lip closures (P B M) and skips every other label, so another language's phones need only map its open vowels
and its bilabials onto those (e.g. German a, a: -> AA; e:, E -> EH; o:, O -> AO; p b m -> P B M). Other
keys of an object are ignored.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from avatar.audio.phones import AlignedSpeech, PhoneSegment
from avatar.core.errors import AvatarError

_FIX = 'Write a JSON list of {"phone": "AA", "start_s": 0.5, "end_s": 0.62} objects in time order'


def read_phone_file(path: Path) -> AlignedSpeech:
    """The phones listed in the JSON file at `path` (module docstring); AvatarError naming the file and the
    first bad entry when it is not such a list."""
    path = Path(path)
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AvatarError("the phone file does not exist", path=path, fix="Pass an existing file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AvatarError(f"the phone file is not readable JSON ({error})", path=path, fix=_FIX) from None
    if not isinstance(entries, list) or not entries:
        raise AvatarError("the phone file does not hold a non-empty list of phones", path=path, fix=_FIX)
    phones = []
    for index, entry in enumerate(entries):
        phone = _segment(entry)
        if phone is None:
            raise AvatarError(
                f"phone {index} ({json.dumps(entry)[:80]}) needs a text 'phone' and finite times with "
                "0 <= start_s < end_s",
                path=path,
                fix=_FIX,
            )
        if phones and phone.start_s < phones[-1].start_s:
            raise AvatarError(
                f"phone {index} starts at {phone.start_s} s, before the one before it", path=path, fix=_FIX
            )
        phones.append(phone)
    return AlignedSpeech(tuple(phones), None)


def _segment(entry: object) -> PhoneSegment | None:
    if not isinstance(entry, dict):
        return None
    phone, start, end = entry.get("phone"), entry.get("start_s"), entry.get("end_s")
    if not isinstance(phone, str) or not phone.strip():
        return None
    if not all(_is_finite_number(value) for value in (start, end)) or not 0 <= start < end:
        return None
    return PhoneSegment(phone.strip().upper(), float(start), float(end))


def _is_finite_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
