"""FE-CLIP's zero-shot benchmark numbers: per-category image AUROC / AP, pixel AUROC and AUPRO, their macro
average, and the paper's figures to compare with (cross-dataset protocol, MVTec AD <-> VisA)."""
from __future__ import annotations

from hdmap.evaluation.metrics import auroc, average_precision, macro_average
from hdmap.evaluation.pro import aupro


PAPER = {"mvtec": {"image_auroc": 91.9, "image_ap": 96.5, "pixel_auroc": 92.6, "aupro": 88.3},
         "visa": {"image_auroc": 84.6, "image_ap": 86.6, "pixel_auroc": 95.9, "aupro": 92.8}}



def benchmark_metrics(predictions: dict) -> tuple[dict, dict]:
    """(per-category metrics in %, macro average)."""
    per_category = {}
    for category in sorted(set(predictions["categories"])):
        part = predictions["categories"] == category
        scores, labels = predictions["scores"][part], predictions["labels"][part]
        maps, masks = predictions["maps"][part], predictions["masks"][part]
        per_category[category] = {
            "image_auroc": 100 * auroc(scores, labels), "image_ap": 100 * average_precision(scores, labels),
            "pixel_auroc": 100 * auroc(maps.ravel(), (masks.ravel() > 0.5).astype(int)),
            "aupro": 100 * aupro(maps, masks)}
    return per_category, macro_average(per_category)
