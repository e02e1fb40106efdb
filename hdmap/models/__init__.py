"""Torch cores (memory bank, PatchCore, gated PatchCore, FE-CLIP), their Lightning wrappers and checkpoint files."""
