"""Backbones with layer taps, an on-disk feature cache, and the horizontal-context descriptor."""
