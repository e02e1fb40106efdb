"""FE-CLIP on HDMAP: seeds, the one scorer shared by fit-eval and the Tune trainable, few-shot calibration."""
import math

import numpy as np
import pytest
import torch

from hdmap.kinds.registry import settings_of
from hdmap.kinds.feclip.model import TINY_CLIP
from hdmap.config import merge
from hdmap.kinds.registry import default_config, validate
from hdmap.kinds.feclip.pipeline import fit_and_score_feclip, fit_feclip, score_feclip


@pytest.fixture
def tiny_feclip():
    return validate(merge(default_config(model_name="feclip"),
                          {"image_size": 32, "feclip": {**TINY_CLIP, "mix": 0.3},
                           "train": {"epochs": 1, "batch_size": 16, "lr": 3e-3, "linear_lr": 3e-3}}))


def _adapters(module):
    return {k: v for k, v in module.state_dict().items() if not k.startswith("model.visual.")}


def test_one_seed_gives_identical_adapters_and_scores(tiny_feclip, domain_c):
    runs = [fit_and_score_feclip(settings_of(tiny_feclip), domain_c, progress=False) for _ in range(2)]
    torch.manual_seed(123)  # the global state before a run must not matter
    runs.append(fit_and_score_feclip(settings_of(tiny_feclip), domain_c, progress=False))
    first = _adapters(runs[0][0])
    for module, outputs, metrics in runs[1:]:
        assert all(torch.equal(first[k], v) for k, v in _adapters(module).items())
        assert torch.equal(outputs["scores"], runs[0][1]["scores"])
    other = merge(tiny_feclip, {"train": {"seed": 1}})
    module, outputs, _ = fit_and_score_feclip(settings_of(other), domain_c, progress=False)
    assert not torch.equal(_adapters(module)["model.patch_to_text.weight"], first["model.patch_to_text.weight"])


def test_trial_reports_the_objective_fit_eval_computes(tiny_feclip, domain_c, monkeypatch, tmp_path):
    """The trainable's last report (an independent record: what the trial told Tune) equals the tune metric of
    fit-eval's scorer, few-shot memory included."""
    from ray import tune

    from hdmap.tune import trainables

    config = merge(tiny_feclip, {"train": {"epochs": 2}, "fewshot": {"shots": 4, "weight": 0.5}})
    reports = []
    monkeypatch.setattr(tune, "report", lambda metrics, checkpoint=None: reports.append(metrics))
    monkeypatch.setattr(trainables, "_domain", lambda **kwargs: domain_c)
    trainables.trainable({}, config, {}, "auroc", None)
    assert [r["epoch"] for r in reports] == [1, 2]
    assert all(isinstance(r["train_loss"], float) and r["train_loss"] > 0 for r in reports)  # TensorBoard shows it
    _, _, metrics = fit_and_score_feclip(settings_of(config), domain_c, progress=False)
    assert reports[-1]["objective"] == pytest.approx(metrics["tune"]["auroc"], abs=1e-9)
    assert reports[-1]["tune_accuracy"] == pytest.approx(metrics["tune"]["accuracy"], abs=1e-9)


def test_fewshot_weight_changes_the_objective(tiny_feclip, domain_c):
    from hdmap.evaluation.protocol import tune_metrics

    config = merge(tiny_feclip, {"train": {"source": "none"}, "fewshot": {"shots": 4}})
    module = fit_feclip(settings_of(config), domain_c, progress=False)
    tune_idx = np.asarray(domain_c.split.tune)
    objectives = {}
    for weight in (0.0, 0.3, 3.0):
        scored = score_feclip(module, settings_of(merge(config, {"fewshot": {"weight": weight}})), domain_c, tune_idx)
        objectives[weight] = tune_metrics(scored.scores, domain_c.test_labels[tune_idx])["auroc"]
    assert len({round(v, 9) for v in objectives.values()}) == 3
    zero_shot = score_feclip(module, settings_of(merge(config, {"fewshot": {"shots": 0}})), domain_c, tune_idx)
    assert tune_metrics(zero_shot.scores, domain_c.test_labels[tune_idx])["auroc"] == pytest.approx(objectives[0.0])


def test_calibration_without_held_out_maps_falls_back_with_a_note(tiny_feclip, domain_c):
    """Oracle gate on domain C's 40 train maps (about 20 per condition): 20 shots leave a condition nothing to
    calibrate on; its scale then comes from leave-one-out among the references, and the run says so."""
    counts = {c: int((np.asarray(domain_c.train_truth) == c).sum()) for c in ("cold", "warm")}
    shots = min(counts.values())
    config = merge(tiny_feclip, {"train": {"source": "none"},
                                 "fewshot": {"shots": shots, "gate": {"kind": "oracle"}}})
    _, _, metrics = fit_and_score_feclip(settings_of(config), domain_c, progress=False)
    assert any("leave-one-out" in note for note in metrics["notes"])
    assert math.isfinite(metrics["holdout"]["auroc"])


def test_calibration_with_one_reference_and_none_held_out_is_refused(tiny_feclip, domain_c, monkeypatch):
    from hdmap.kinds.feclip import pipeline as feclip_pipeline

    module = fit_feclip(settings_of(merge(tiny_feclip, {"train": {"source": "none"}})), domain_c, progress=False)
    with pytest.raises(ValueError, match="condition 'cold' has 1 train map and none held out"):
        feclip_pipeline.calibration_scale(module, domain_c.train_maps[:1], domain_c.train_maps[:0], "cold",
                                       feclip_pipeline.map_transform(settings_of(tiny_feclip)), False, [])


def test_asha_runs_as_long_as_the_longest_searched_epochs():
    from hdmap.tune.runner import SPACES_DIR, make_scheduler
    from hdmap.tune.spaces import load_space

    space = load_space(SPACES_DIR / "feclip.yaml")
    base = space.base_config(real_data=True)
    assert base["train"]["epochs"] == 9 and make_scheduler(space, base)._max_t == 9
    space.params = [p for p in space.params if p.key != "train.epochs"]
    assert make_scheduler(space, merge(base, {"train": {"epochs": 4}}))._max_t == 4
    space = load_space(SPACES_DIR / "feclip.yaml")
    next(p for p in space.params if p.key == "train.epochs").values = [3, 12]
    assert make_scheduler(space, base)._max_t == 12
    patchcore = load_space(SPACES_DIR / "patchcore.yaml")
    assert make_scheduler(patchcore, patchcore.base_config()) is None


def test_lfs_stat_is_searched_and_validated():
    from hdmap.config import ConfigError
    from hdmap.tune.runner import SPACES_DIR
    from hdmap.tune.spaces import load_space

    for name in ("feclip.yaml", "feclip_quick.yaml"):
        params = {p.key: p for p in load_space(SPACES_DIR / name).params}
        assert set(params["feclip.lfs_stat"].values) == {"mean", "abs_mean", "log_energy"}
    with pytest.raises(ConfigError, match="lfs_stat"):
        validate(merge(default_config(model_name="feclip"), {"feclip": {"lfs_stat": "median"}}))


def _count_tower_passes(monkeypatch):
    from hdmap.kinds.feclip.model import FEClipModel

    seen, original = [], FEClipModel._run
    monkeypatch.setattr(FEClipModel, "_run", lambda self, images: seen.append(images.shape[0]) or original(self, images))
    return seen


def test_each_test_map_goes_through_the_tower_once_with_the_fewshot_memory(tiny_feclip, domain_c, monkeypatch):
    """Scores and few-shot distances of a test map come from one pass; references and held-out calibration maps
    take one pass each."""
    config = merge(tiny_feclip, {"train": {"source": "none"}, "fewshot": {"shots": 3, "calibration_maps": 4}})
    module = fit_feclip(settings_of(config), domain_c, progress=False)
    seen = _count_tower_passes(monkeypatch)
    scored = score_feclip(module, settings_of(config), domain_c)
    assert len(scored.scores) == len(domain_c.test_maps)
    assert sum(seen) == len(domain_c.test_maps) + 2 * (3 + 4)  # test maps once; per condition 3 refs + 4 held out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fewshot_memory_and_knn_live_on_the_gpu(tiny_feclip, domain_c, monkeypatch):
    from hdmap.models.memory_bank import MemoryBank

    devices, original = [], MemoryBank.fit
    monkeypatch.setattr(MemoryBank, "fit", lambda self, patches, *a, **k: devices.append(patches.device.type) or
                        original(self, patches, *a, **k))
    config = merge(tiny_feclip, {"train": {"source": "none"}, "fewshot": {"shots": 3}})
    score_feclip(fit_feclip(settings_of(config), domain_c, progress=False), settings_of(config), domain_c)
    assert devices and set(devices) == {"cuda"}


def test_training_precision_auto_is_fp32_on_a_cpu_and_bf16_trains_to_the_same_loss(tiny_feclip, domain_c):
    """auto: bf16-mixed only on a CUDA GPU with bfloat16; on this CPU 32-true, the path every result here ran. The
    bf16-mixed path (what a GPU gets) trains the tiny CLIP's adapters to a loss within noise of fp32's."""
    import lightning as L

    from hdmap.kinds.feclip.pipeline import band_dataset, build_feclip
    from hdmap.kinds.feclip.training import train_feclip, training_precision

    assert training_precision("auto") == "32-true" and training_precision("bf16-mixed") == "bf16-mixed"
    run = settings_of(tiny_feclip)
    losses = {}
    for precision in ("32", "bf16-mixed"):
        seen = []

        class Losses(L.Callback):
            def on_train_epoch_end(self, trainer, module):
                seen.append(float(trainer.callback_metrics["train_loss"]))

        train_feclip(build_feclip(run), band_dataset(run, domain_c), epochs=3, batch_size=16, callbacks=[Losses()],
                     progress=False, seed=0, precision=precision)
        losses[precision] = seen
    assert len(losses["32"]) == len(losses["bf16-mixed"]) == 3
    assert abs(losses["bf16-mixed"][-1] - losses["32"][-1]) <= 0.1 * losses["32"][-1] + 0.02, losses
