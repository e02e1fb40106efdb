"""The screenshot script makes its four pictures (slow: a 4-trial search; needs Chromium and the dashboard extra)."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_screenshot_script_makes_four_pngs(tmp_path):
    if not any(shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome", "chrome")):
        pytest.skip("no headless Chromium (Debian: apt-get install chromium)")
    pytest.importorskip("optuna_dashboard", reason="the `dashboard` extra is not installed")
    done = subprocess.run([sys.executable, str(REPO / "experiments" / "dashboard_screenshots.py"), "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-2000:]
    pictures = sorted(tmp_path.glob("*.png"))
    assert [p.name for p in pictures] == ["optuna_dashboard_analytics.png", "optuna_dashboard_study.png",
                                          "ray_dashboard_actors.png", "ray_dashboard_overview.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000 for p in pictures)
