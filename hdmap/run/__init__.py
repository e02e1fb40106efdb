"""Pipelines that tie data, features, models and evaluation together (used by the CLI and the Tune trainables)."""
