"""The patchcore model kind: torch core, Lightning module, settings tree, pipeline and its registry entry (kind.py)."""
