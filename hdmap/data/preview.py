"""A picture of a few maps per domain: train, test good, test fault (cold and warm)."""
from __future__ import annotations

from pathlib import Path

from hdmap.data.map_files import discover_domain, read_map


def plot_domain_samples(root: str | Path, domains: str, out_png: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [("train", None, None), ("test/good", 0, "cold"), ("test/good", 0, "warm"),
               ("test/fault", 1, "cold"), ("test/fault", 1, "warm")]
    fig, axes = plt.subplots(len(domains), len(columns), figsize=(3.2 * len(columns), 1.3 * len(domains) + 0.6),
                             squeeze=False)
    for row, domain in enumerate(domains):
        items = discover_domain(root, domain)
        for col, (subset, label, condition) in enumerate(columns):
            pool = items["train"] if subset == "train" else [
                i for i in items["test"] if i.label == label and i.condition == condition]
            array = read_map(pool[0].path)
            ax = axes[row][col]
            image = ax.imshow(array, cmap="viridis", vmin=0, vmax=max(1.0, float(array.max())), aspect="auto")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(subset if condition is None else f"{subset} {condition}", fontsize=9)
            if col == 0:
                ax.set_ylabel(f"domain {domain}", fontsize=9)
    fig.colorbar(image, ax=axes, shrink=0.6)
    fig.savefig(out_png, dpi=70, bbox_inches="tight")
    plt.close(fig)
    return Path(out_png)
