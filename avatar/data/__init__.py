"""The capture dataset: its files, its manifest and report records, its training split and the head window."""
