"""A toy model kind, written as a new kind is: one folder (torch core, Lightning module, settings tree, pipeline, the
registry entry) and one `register(...)` line (tests/test_kind_registry.py adds it)."""
