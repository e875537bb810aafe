"""Feature encodings of 3D positions: the multi-resolution hash grid (tiny-cuda-nn compatible)."""

from __future__ import annotations

from avatar.model.encoding.hash_grid import (
    HashGridConfig,
    HashGridEncoding,
    HashGridLevel,
    flatten_level_tables,
    grid_indices,
    hash_grid_encode,
    level_tables,
)
from avatar.model.encoding.select import make_hash_grid

__all__ = [
    "HashGridConfig",
    "HashGridEncoding",
    "HashGridLevel",
    "flatten_level_tables",
    "grid_indices",
    "hash_grid_encode",
    "level_tables",
    "make_hash_grid",
]
