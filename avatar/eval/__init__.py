"""`avatar eval`: held-out frames rendered and measured against the real ones, with a side-by-side video and plots."""
