"""docs/settings.md is generated from the settings trees: stale docs fail here, and every key is in them."""
import dataclasses
from pathlib import Path

from hdmap.kinds.registry import KINDS
from hdmap.setting_rules import nested_classes
from hdmap.settings_docs import settings_markdown

DOCS = Path(__file__).resolve().parents[1] / "docs" / "settings.md"


def _leaves(tree, prefix=""):
    nested = nested_classes(tree)
    for field in dataclasses.fields(tree):
        if field.name in nested:
            yield from _leaves(nested[field.name], f"{prefix}{field.name}.")
        else:
            yield f"{prefix}{field.name}"


def test_docs_settings_md_is_the_generated_one():
    assert DOCS.read_text() == settings_markdown(), "stale: run `python -m hdmap.settings_docs docs/settings.md`"


def test_every_key_of_every_kind_is_documented_with_a_help_line():
    text = DOCS.read_text()
    for kind in KINDS.values():
        for key in _leaves(kind.settings):
            row = next((line for line in text.splitlines() if line.startswith(f"| `{key}` |")), None)
            assert row is not None, key
            assert row.rstrip(" |").split("|")[-1].strip(), f"{key} has no help line"
