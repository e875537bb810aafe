"""Fitting a talking head to a capture dataset."""
