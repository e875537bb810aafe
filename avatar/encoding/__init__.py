"""Feature encodings of 3D positions: the multi-resolution hash grid (tiny-cuda-nn compatible)."""

from __future__ import annotations

from avatar.encoding.hash_grid import (
    HashGridConfig,
    HashGridEncoding,
    HashGridLevel,
    flatten_level_tables,
    grid_indices,
    hash_grid_encode,
    level_tables,
    make_hash_grid,
    tcnn_unavailable_reason,
)

__all__ = [
    "HashGridConfig",
    "HashGridEncoding",
    "HashGridLevel",
    "flatten_level_tables",
    "grid_indices",
    "hash_grid_encode",
    "level_tables",
    "make_hash_grid",
    "tcnn_unavailable_reason",
]
