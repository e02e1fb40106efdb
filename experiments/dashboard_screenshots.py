"""Screenshots of Ray's dashboard during a search and of optuna-dashboard on its finished study, into docs/images/.

    python experiments/dashboard_screenshots.py [--out docs/images] [--chromium /usr/bin/chromium]

Runs a 4-trial search on the embedded synthetic data (`hdmap tune --dashboard`, about 2 minutes on a 2-core CPU),
photographs Ray's dashboard while a trial runs, then serves the search's Optuna study with optuna-dashboard and
photographs it. Needs a headless Chromium (Debian: `apt-get install chromium`) and the `dashboard` extra
(`pip install -e ".[dashboard]"`). Everything listens on 127.0.0.1 only; Ray's dashboard token is switched off for
this local search (RAY_AUTH_MODE=disabled), since a command-line browser cannot type it.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RAY_PAGES = {"ray_dashboard_overview.png": "#/overview", "ray_dashboard_actors.png": "#/actors"}
OPTUNA_PAGES = {"optuna_dashboard_study.png": "dashboard/studies/1",
                "optuna_dashboard_analytics.png": "dashboard/studies/1/analytics"}
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--window-size=1400,900", "--virtual-time-budget=15000"]


def find_chromium(given: str | None) -> str:
    for name in ([given] if given else ["chromium", "chromium-browser", "google-chrome", "chrome"]):
        found = shutil.which(name)
        if found:
            return found
    sys.exit(f"error: no headless browser found ({given or 'chromium'}); Debian: apt-get install chromium, "
             f"or pass --chromium PATH")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str, seconds: float, what: str) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    sys.exit(f"error: {what} did not answer at {url} within {seconds:.0f} s")


def photograph(chromium: str, url: str, path: Path, profile: Path) -> None:
    done = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={path}", url],
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0 or not path.exists() or path.stat().st_size == 0:
        sys.exit(f"error: {chromium} made no screenshot of {url}: {done.stderr.strip()[-500:]}")
    print(f"  {path} <- {url}")


def trial_computing(log: Path) -> bool:
    """A trial's own output (its feature progress) has reached the search's log: its actor runs."""
    return log.exists() and "(trainable pid=" in log.read_text(errors="replace")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "images"), help="folder for the PNG files")
    parser.add_argument("--chromium", help="headless browser (default: chromium on PATH)")
    args = parser.parse_args()
    chromium = find_chromium(args.chromium)
    dashboard = Path(sys.executable).with_name("optuna-dashboard")
    if not dashboard.exists():
        sys.exit('error: optuna-dashboard is not installed: pip install -e ".[dashboard]"')
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="hdmap_screenshots_"))
    exp_dir = work / "runs" / "screenshots"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    search = subprocess.Popen([str(Path(sys.executable).with_name("hdmap")), "tune", "--num-samples", "4",
                               "--max-concurrent", "1", "--dashboard", "--storage", str(work / "runs"),
                               "--name", "screenshots", "--cache-dir", str(work / "cache")],
                              stdout=(work / "tune.log").open("w"), stderr=subprocess.STDOUT, env=env)
    try:
        print(f"search running (log: {work / 'tune.log'}); waiting until its first trial computes")
        deadline = time.time() + 600
        while time.time() < deadline and not trial_computing(work / "tune.log") and search.poll() is None:
            time.sleep(0.5)
        if search.poll() is not None:
            sys.exit(f"error: the search ended before its first trial; see {work / 'tune.log'}")
        url = dashboard_url(work / "tune.log")
        wait_for(url, 60, "Ray's dashboard")
        for name, page in RAY_PAGES.items():
            photograph(chromium, f"{url}/{page}", out / name, work / "profile")
        if search.wait(timeout=900) != 0:
            sys.exit(f"error: the search failed; see {work / 'tune.log'}")
    finally:
        if search.poll() is None:
            search.terminate()
            search.wait(timeout=60)
    database = next(exp_dir.glob("*.optuna.db"))
    port = free_port()
    server = subprocess.Popen([str(dashboard), f"sqlite:///{database}", "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(f"http://127.0.0.1:{port}/api/studies", 60, "optuna-dashboard")
        for name, page in OPTUNA_PAGES.items():
            photograph(chromium, f"http://127.0.0.1:{port}/{page}", out / name, work / "profile")
    finally:
        server.terminate()
        server.wait(timeout=30)
    shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {len(RAY_PAGES) + len(OPTUNA_PAGES)} screenshots to {out}")
    return 0


def dashboard_url(log: Path) -> str:
    """The URL `hdmap tune --dashboard` printed (it names the port Ray chose), else Ray's default."""
    for line in log.read_text(errors="replace").splitlines():
        if "Ray dashboard: http" in line:
            return line.split("Ray dashboard: ")[1].split()[0].rstrip("/")
    return "http://127.0.0.1:8265"


if __name__ == "__main__":
    sys.exit(main())
