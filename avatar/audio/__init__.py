"""Audio features of a clip: log-mel windows per video frame, their per-clip normalisation, and the audio/mouth offset."""
