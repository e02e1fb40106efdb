"""General statistics the gates and the condition statistics share: percentiles of maps, 1-D two-means, a two-
component Gaussian mixture by EM, k-means with two clusters, and Ashman's D test for two separated groups."""
from __future__ import annotations

import numpy as np
import torch


PERCENTILE_MAPS = 4096  # maps whose percentiles are computed at once (each map's own: the same values in any chunks)


def map_percentile(maps: torch.Tensor, percentile: float) -> torch.Tensor:
    """Each map's own percentile, (N,); in chunks of maps, so 100,000 maps never make a sorted copy of them all."""
    flat = maps.flatten(1)
    return torch.cat([torch.quantile(flat[start:start + PERCENTILE_MAPS].float(), percentile / 100.0, dim=1)
                      for start in range(0, max(len(flat), 1), PERCENTILE_MAPS)])



def two_means_1d(values: torch.Tensor, iterations: int = 50) -> tuple[float, float]:
    """Centres (low, high) of a 1-D 2-means."""
    low, high = values.min().item(), values.max().item()
    for _ in range(iterations):
        split = (low + high) / 2
        lower, upper = values[values <= split], values[values > split]
        if len(lower) == 0 or len(upper) == 0:
            break
        low, high = lower.mean().item(), upper.mean().item()
    return low, high



def fit_gmm(x: torch.Tensor, iterations: int = 100) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two-component diagonal Gaussian mixture by EM, started from a split at the median of column 0."""
    x = x.double()
    high = x[:, 0] > x[:, 0].median()
    if high.all() or not high.any():
        high = torch.arange(len(x), device=x.device) >= len(x) // 2
    means = torch.stack([x[~high].mean(0), x[high].mean(0)])
    variances = torch.stack([x[~high].var(0, unbiased=False), x[high].var(0, unbiased=False)]) + 1e-8
    weights = torch.tensor([0.5, 0.5], dtype=torch.float64, device=x.device)
    for _ in range(iterations):
        resp = gmm_posterior(x, means, variances, weights)
        total = resp.sum(0) + 1e-12
        weights = total / len(x)
        means = (resp.T @ x) / total[:, None]
        variances = (resp.T @ x ** 2) / total[:, None] - means ** 2 + 1e-8
    return means, variances, weights



def gmm_posterior(x, means, variances, weights) -> torch.Tensor:
    x = x.double()
    log_p = -0.5 * (((x[:, None, :] - means) ** 2) / variances + torch.log(2 * np.pi * variances)).sum(-1)
    log_p = log_p + torch.log(weights)
    return torch.softmax(log_p, dim=1)



def two_means(x: torch.Tensor, seed: int = 0, iterations: int = 50) -> torch.Tensor:
    """Labels 0/1 of a k-means with two clusters (seeded k-means++ start), on the features' device."""
    generator = torch.Generator().manual_seed(seed)
    first = x[torch.randint(len(x), (1,), generator=generator).item()]
    far = torch.cdist(x, first[None])[:, 0] ** 2
    second = x[torch.multinomial(far.cpu() + 1e-12, 1, generator=generator).item()]
    centres = torch.stack([first, second])
    for _ in range(iterations):
        labels = torch.cdist(x, centres).argmin(1)
        updated = torch.stack([x[labels == c].mean(0) if (labels == c).any() else centres[c] for c in (0, 1)])
        if torch.equal(updated, centres):
            break
        centres = updated
    return labels


BIMODAL_D = 2.0  # Ashman's D above which two groups count as separated



MIN_GROUP_SHARE = 0.05



def ashman_d(values: torch.Tensor) -> tuple[float, float]:
    """(Ashman's D, weight of the smaller component) of a two-component Gaussian mixture fitted by EM to a 1-D
    statistic: D = sqrt(2) |m1 - m2| / sqrt(s1^2 + s2^2). D > 2 is the usual threshold for two separated
    components; a hard split of one Gaussian into halves would give D ~ 2.7, the mixture fit gives ~1."""
    values = values.double().flatten()
    if len(values) < 4 or float(values.std()) == 0.0:
        return 0.0, 0.0
    scale = values.std()
    means, variances, weights = fit_gmm(((values - values.mean()) / scale)[:, None])
    d = float(np.sqrt(2.0) * (means[1, 0] - means[0, 0]).abs() / (variances[0, 0] + variances[1, 0]).sqrt())
    return d, float(weights.min())



def is_bimodal(values: torch.Tensor, assignment: torch.Tensor) -> tuple[bool, str]:
    """(clearly two groups?, why): Ashman's D of a 2-Gaussian mixture on the statistic > 2, the smaller mixture
    component and the smaller group of `assignment` each >= 5 % of the maps."""
    d, weight = ashman_d(values)
    share = float(min((assignment == 0).float().mean(), (assignment == 1).float().mean()))
    ok = d > BIMODAL_D and min(weight, share) >= MIN_GROUP_SHARE
    return ok, (f"Ashman's D = {d:.2f} (needs > {BIMODAL_D}), smaller group {100 * min(weight, share):.0f} % "
                f"(needs >= {100 * MIN_GROUP_SHARE:.0f} %)")



def held_out_projection(features: torch.Tensor, assignment: torch.Tensor, seed: int = 0):
    """(values, their assignment) of one seeded half of the maps projected onto the line between the two groups'
    means fitted on the OTHER half; None when the fitting half lacks a group. Fitting the direction on the maps
    it projects makes even isotropic noise look bimodal in many dimensions."""
    order = torch.randperm(len(features), generator=torch.Generator().manual_seed(seed))
    fit, test = order[: len(order) // 2], order[len(order) // 2:]
    x, groups = features.float().cpu(), assignment.cpu()
    if min(int((groups[fit] == code).sum()) for code in (0, 1)) == 0:
        return None
    direction = x[fit][groups[fit] == 1].mean(0) - x[fit][groups[fit] == 0].mean(0)
    return x[test] @ (direction / direction.norm().clamp_min(1e-12)), groups[test]

