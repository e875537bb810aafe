"""Video and audio input/output."""
