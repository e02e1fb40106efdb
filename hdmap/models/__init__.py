"""Torch cores (memory bank, PatchCore, gated PatchCore) and their Lightning wrappers."""
