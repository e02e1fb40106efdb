"""Backbones with layer taps, an on-disk feature cache, its datamodule, and the horizontal-context descriptor."""
