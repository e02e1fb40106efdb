"""The README stays a page a newcomer reads in five minutes, and every relative link in it and in docs/ resolves."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_the_readme_is_at_most_12_kb():
    assert len((REPO / "README.md").read_bytes()) <= 12 * 1024


def test_every_relative_link_resolves():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if not target.startswith(("http://", "https://", "mailto:")) and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert broken == []


def test_results_page_is_the_generated_index_of_the_results_tables():
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "experiments" / "results_index.py"
    spec = importlib.util.spec_from_file_location("results_index", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (script.parents[1] / "docs" / "results.md").read_text() == module.index_markdown(), (
        "docs/results.md is stale: python experiments/results_index.py")
