"""Typed, versioned JSON records: every file the pipeline writes for another stage to read.

A record is a frozen dataclass with `FORMAT` and `VERSION`; `to_json()` writes them first, `from_json()`
refuses another format or version with the reader's own message. Nested dataclasses, paths, tuples, lists
and dicts round-trip through their type hints. A record whose JSON layout differs from its fields (an older
layout kept readable) overrides `_encode` and `_decode`.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from avatar.core.atomic import write_json
from avatar.core.errors import AvatarError

R = TypeVar("R", bound="Record")


def encode(value: Any) -> Any:
    """A dataclass, path, tuple, list or dict of them -> plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if isinstance(value, Record):
            return value.to_json()
        return {field.name: encode(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [encode(item) for item in value]
    if isinstance(value, dict):
        return {str(key): encode(item) for key, item in value.items()}
    return value


def decode(hint: Any, value: Any) -> Any:
    """Plain JSON values -> the type `hint` names (dataclasses by their fields' hints)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [option for option in typing.get_args(hint) if option is not type(None)]
        return None if value is None else decode(options[0], value)
    if origin is typing.Literal or hint is Any:
        return value
    if origin in (tuple, list):
        arguments = typing.get_args(hint)
        item = arguments[0] if arguments else Any
        items = [decode(item, entry) for entry in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        _, item = typing.get_args(hint) or (str, Any)
        return {key: decode(item, entry) for key, entry in value.items()}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if issubclass(hint, Record):
            return hint.from_json(value)
        hints = typing.get_type_hints(hint)
        known = {field.name for field in dataclasses.fields(hint) if field.init}
        unknown = set(value) - known
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)} for {hint.__name__}")
        return hint(**{name: decode(hints[name], entry) for name, entry in value.items()})
    if hint is Path:
        return Path(value)
    if hint is float and isinstance(value, int):
        return float(value)
    return value


@dataclasses.dataclass(frozen=True)
class Record:
    FORMAT: ClassVar[str]
    VERSION: ClassVar[int]
    # what the reader of an older or newer file should do
    VERSION_FIX: ClassVar[str] = "Make it again with this version of splat-avatar"

    def to_json(self) -> dict[str, Any]:
        fields = {field.name: encode(getattr(self, field.name)) for field in dataclasses.fields(self)}
        return {"format": self.FORMAT, "version": self.VERSION, **self._encode(fields)}

    @classmethod
    def from_json(cls: type[R], data: dict[str, Any], *, path: Path | None = None) -> R:
        if not isinstance(data, dict) or data.get("format") != cls.FORMAT:
            raise AvatarError(f"this is not a {cls.FORMAT} file", path=path, fix=cls.VERSION_FIX)
        if data.get("version") != cls.VERSION:
            raise AvatarError(
                f"this {cls.FORMAT} has format version {data.get('version')}, this splat-avatar reads version "
                f"{cls.VERSION}",
                path=path,
                fix=cls.VERSION_FIX,
            )
        fields = cls._decode({key: value for key, value in data.items() if key not in ("format", "version")})
        hints = typing.get_type_hints(cls)
        try:
            return cls(**{name: decode(hints[name], value) for name, value in fields.items()})
        except (TypeError, ValueError, KeyError, AttributeError) as error:
            raise AvatarError(
                f"{cls.FORMAT} is malformed ({error})", path=path, fix=cls.VERSION_FIX
            ) from error

    def write(self, path: Path) -> None:
        write_json(path, self.to_json())

    @classmethod
    def read(cls: type[R], path: Path) -> R:
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError as error:
            raise AvatarError(f"there is no {Path(path).name}", path=path, fix=cls.VERSION_FIX) from error
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
            raise AvatarError(
                f"{Path(path).name} is corrupt ({error})", path=path, fix=cls.VERSION_FIX
            ) from error
        return cls.from_json(data, path=path)

    @classmethod
    def _decode(cls, fields: dict[str, Any]) -> dict[str, Any]:
        """The JSON's fields (format and version removed) -> this record's fields, before typing."""
        return fields

    def _encode(self, fields: dict[str, Any]) -> dict[str, Any]:
        """This record's fields as JSON values -> the JSON layout."""
        return fields
