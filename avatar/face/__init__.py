"""Mediapipe's face mesh: the named landmark sets, the regions and signals measured on them, and the models that ship in its wheel."""
