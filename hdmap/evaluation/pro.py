"""AUPRO: area under the per-region-overlap curve up to a false-positive rate limit (0.3), normalised."""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def aupro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float = 0.3, steps: int = 200) -> float:
    """maps, masks: (N, H, W). PRO at a threshold = mean over ground-truth regions of the covered fraction;
    FPR over normal pixels; the PRO(FPR) curve is integrated on [0, fpr_limit] and divided by fpr_limit."""
    maps, masks = np.asarray(maps, np.float64), np.asarray(masks) > 0.5
    regions = []
    for index, mask in enumerate(masks):
        labelled, count = ndimage.label(mask)
        regions += [(index, labelled == r) for r in range(1, count + 1)]
    if not regions or masks.all():
        return float("nan")
    normal = maps[~masks]
    thresholds = np.unique(np.quantile(maps, np.linspace(0.0, 1.0, steps)))[::-1]  # strict to loose
    fprs, pros = [], []
    for threshold in thresholds:
        fprs.append(float(np.mean(normal >= threshold)))
        pros.append(float(np.mean([np.mean(maps[i][region] >= threshold) for i, region in regions])))
    fprs, pros = np.array(fprs), np.array(pros)
    keep = fprs <= fpr_limit
    x, y = np.r_[0.0, fprs[keep]], np.r_[0.0, pros[keep]]
    if x[-1] < fpr_limit:  # close the curve at the limit by interpolation
        after = np.flatnonzero(fprs > fpr_limit)
        if len(after):
            j = after[0]
            prev_f, prev_p = x[-1], y[-1]
            y_end = prev_p + (pros[j] - prev_p) * (fpr_limit - prev_f) / max(fprs[j] - prev_f, 1e-12)
            x, y = np.r_[x, fpr_limit], np.r_[y, y_end]
    return float(np.trapezoid(y, x) / fpr_limit)
