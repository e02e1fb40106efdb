"""Model kinds: one module each, listed in registry.py."""
