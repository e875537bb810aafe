"""Driving a fitted head: conditions in, the head rendered and composited over torso and background, videos out."""
