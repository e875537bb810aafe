"""The built-in sample: a talking clip generated from a portrait and synthesised speech, with its ground truth."""
