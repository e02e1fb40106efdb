"""Pipelines: how a PatchCore or FE-CLIP model is fitted and scored on one domain (the kinds call them)."""
