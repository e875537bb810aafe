"""Shared foundations of every stage: user-facing errors, atomic writes, typed records, the pinhole camera, and the one place that resolves `auto` devices and backends."""
