"""This project's PatchCore vs anomalib 2.7's PatchcoreModel on the same data, backbone, taps, coreset ratio
and k; then exact kNN timing, faiss vs torch.cdist, for banks of 1e4, 1e5 and 1e6 vectors.

    pip install -e ".[bench]"          # anomalib 2.7 (optional; only this benchmark needs it)
    python benchmarks/patchcore_vs_anomalib.py [--shots 16] [--coreset-ratio 0.1] [--k 9] [--skip-knn]

Both models get identical input tensors (synthetic domain C, aspect 384 px, EfficientNet-Lite0 with the
offline ImageNet weights, taps 2 and 3, 3x3 local pooling), the same 2 x shots train references, and are
timed end to end: fit = features of the references + coreset; predict = features of all test maps + scoring.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from hdmap.data.synthetic_default import ensure_embedded_dataset
from hdmap.data.map_files import discover_domain, read_map
from hdmap.data.splits import sample_uniform
from hdmap.evaluation.metrics import auroc
from hdmap.features.backbones import BackboneSpec, build_backbone
from hdmap.data.transforms import MapTransform
from hdmap.config import plain
from hdmap.features.feature_datamodule import FeatureDataModule
from hdmap.kinds.patchcore.module import PatchCoreModule, gather_predictions
from hdmap.kinds.patchcore.settings import PatchCoreSettings
from hdmap.run.trainer import make_trainer

TAPS = (2, 3)


def batches(x: torch.Tensor, size: int = 32):
    for start in range(0, len(x), size):
        yield x[start:start + size]


def run_ours(refs, test, args) -> tuple[np.ndarray, float, float]:
    """The path every hdmap run takes: the Lightning module, fitted by Trainer.fit on the datamodule of its plan,
    scored by Trainer.predict (here on features computed in the loop, as anomalib's are)."""
    backbone = build_backbone(BackboneSpec(taps=TAPS))
    config = PatchCoreSettings(bank_mode="mixed", shots=None, reference_sampling="uniform",
                             coreset_ratio=args.coreset_ratio, bank_size=None, coreset_method="greedy",
                             projection_dim=128, reweight_k=args.k, context_ks=(0,), seed=0, input_norm="none",
                             band_weight=0.0, fusion="none", image_score="max")  # anomalib's ratio and score
    module = PatchCoreModule(model=plain(config))
    start = time.perf_counter()
    with torch.no_grad():
        grids = [torch.cat(parts).numpy() for parts in zip(*[backbone(b) for b in batches(refs)])]
    train_maps = np.zeros((len(refs), 2, 2), dtype=np.float32)  # no raw maps needed: no band channel, no gate
    make_trainer("cpu").fit(module, datamodule=module.prepare_fit(grids, train_maps))
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    with torch.no_grad():
        grids = [torch.cat(parts).numpy() for parts in zip(*[backbone(b) for b in batches(test)])]
    features = FeatureDataModule([], train_maps, grids, np.zeros((len(test), 2, 2), dtype=np.float32))
    scores = gather_predictions(make_trainer("cpu").predict(module, datamodule=features))["scores"].numpy()
    return scores, fit_s, time.perf_counter() - start


def run_anomalib(refs, test, args) -> tuple[np.ndarray, float, float]:
    from anomalib.models.image.patchcore.torch_model import PatchcoreModel

    model = PatchcoreModel(layers=list(TAPS), backbone="tf_efficientnet_lite0", pre_trained=False,
                           num_neighbors=args.k)
    weights = build_backbone(BackboneSpec(taps=TAPS)).model.state_dict()  # the same offline ImageNet weights
    missing, _ = model.feature_extractor.feature_extractor.load_state_dict(weights, strict=False)
    assert not missing, f"weights did not map onto anomalib's extractor: {missing[:3]}"
    start = time.perf_counter()
    model.train()
    with torch.no_grad():
        for batch in batches(refs):
            model(batch)
        model.subsample_embedding(args.coreset_ratio)
    fit_s = time.perf_counter() - start
    model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        scores = torch.cat([model(b).pred_score.flatten() for b in batches(test)]).numpy()
    return scores, fit_s, time.perf_counter() - start


def knn_timing(sizes, dim: int, queries: int) -> list[tuple]:
    from hdmap.models.memory_bank import knn

    rows = []
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(queries, dim, generator=generator)
    for size in sizes:
        bank = torch.randn(size, dim, generator=generator)
        start = time.perf_counter()
        faiss_d, _ = knn(bank, q, 1)
        faiss_s = time.perf_counter() - start
        start = time.perf_counter()
        best = torch.full((queries,), float("inf"))
        for chunk in torch.split(bank, 100_000):  # chunked so 1e6 x queries fits in memory
            best = torch.minimum(best, torch.cdist(q, chunk).min(dim=1).values)
        cdist_s = time.perf_counter() - start
        agree = torch.allclose(best, faiss_d[:, 0], rtol=1e-3, atol=1e-3)
        rows.append((size, faiss_s, cdist_s, agree))
        del bank
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shots", type=int, default=16, help="references per condition: 2 x shots maps in all")
    p.add_argument("--coreset-ratio", type=float, default=0.1)
    p.add_argument("--k", type=int, default=9, help="neighbourhood re-weighting k (anomalib num_neighbors)")
    p.add_argument("--image-size", type=int, default=384)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-knn", action="store_true")
    p.add_argument("--knn-dim", type=int, default=384)
    p.add_argument("--knn-queries", type=int, default=768, help="query patches (one map's worth)")
    args = p.parse_args()
    torch.manual_seed(0)
    root = ensure_embedded_dataset()
    items = discover_domain(root, "C")
    backbone = build_backbone(BackboneSpec(taps=TAPS))
    transform = MapTransform(args.image_size, "aspect", "backbone", backbone.stride, backbone.mean_std)
    picked = sample_uniform(len(items["train"]), 2 * args.shots, seed=0)
    refs = transform.batch([read_map(items["train"][i].path) for i in picked])
    test = transform.batch([read_map(i.path) for i in items["test"]])
    labels = np.array([i.label for i in items["test"]])
    print(f"synthetic domain C: {len(refs)} references, {len(test)} test maps, input {tuple(test.shape[1:])}, "
          f"tf_efficientnet_lite0 taps {TAPS}, coreset {args.coreset_ratio}, k {args.k}, "
          f"torch threads {torch.get_num_threads()}")
    runners = {"hdmap": run_ours, "anomalib 2.7": run_anomalib}
    results = {}
    for name, runner in runners.items():
        runs = []
        for repeat in range(args.repeats):  # alternate-free: each implementation's repeats back to back
            torch.manual_seed(repeat)
            try:
                runs.append(runner(refs, test, args))
            except ImportError:
                print("anomalib is not installed (pip install -e '.[bench]'): its row is left out")
                break
        if runs:
            results[name] = (float(np.mean([100 * auroc(r[0], labels) for r in runs])),
                             float(np.median([r[1] for r in runs])), float(np.median([r[2] for r in runs])))
    print(f"| implementation | AUROC % (all test, mean of {args.repeats}) | fit s (median) | predict s (median) |")
    print("|---|---|---|---|")
    for name, (auc, fit_s, predict_s) in results.items():
        print(f"| {name} | {auc:.1f} | {fit_s:.2f} | {predict_s:.2f} |")
    if "anomalib 2.7" in results:
        ours, theirs = [(None,) + results[n][1:] for n in ("hdmap", "anomalib 2.7")]
        print(f"time ratio hdmap / anomalib: fit {ours[1] / theirs[1]:.2f}, predict {ours[2] / theirs[2]:.2f}, "
              f"total {(ours[1] + ours[2]) / (theirs[1] + theirs[2]):.2f}")
    if not args.skip_knn:
        print(f"\nexact 1-NN, {args.knn_queries} queries of dim {args.knn_dim}")
        print("| bank vectors | faiss IndexFlatL2 s | torch.cdist s | cdist / faiss | same distances |\n|---|---|---|---|---|")
        for size, faiss_s, cdist_s, agree in knn_timing([10_000, 100_000, 1_000_000], args.knn_dim, args.knn_queries):
            print(f"| {size:,} | {faiss_s:.3f} | {cdist_s:.3f} | {cdist_s / faiss_s:.1f} | {agree} |")


if __name__ == "__main__":
    main()
