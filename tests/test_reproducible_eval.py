"""`hdmap eval` scores a checkpoint with the torch thread count its run used: CPU matrix sums round differently
with another count (on a hard set enough to move a tune threshold), so a trial fitted with one thread per trial
is reloaded with one thread."""
import torch

from hdmap.kinds.registry import settings_of
from hdmap.features.cache import FeatureCache
from hdmap.jobs.checkpoints import read_checkpoint, save_checkpoint
from hdmap.jobs.evaluate_checkpoint import evaluate_checkpoint
from hdmap.kinds.registry import fit_and_score


def test_eval_uses_the_thread_count_the_checkpoint_records(domain_c, tiny_config, tmp_path):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # a Tune trial with --cpus-per-trial 1
        module, _, metrics = fit_and_score(tiny_config, domain_c, FeatureCache(tmp_path / "cache", progress=False))
        path = save_checkpoint(tmp_path / "run", module, settings_of(tiny_config), domain_c, metrics)
        torch.set_num_threads(2)
        assert read_checkpoint(path)["hdmap"]["threads"] == 1
        again = evaluate_checkpoint(path, cache_dir=str(tmp_path / "cache"))
        assert torch.get_num_threads() == 2  # restored afterwards
    finally:
        torch.set_num_threads(before)
    assert again["devices"]["cpu_threads"] == 1
    assert again["tune"]["threshold"] == metrics["tune"]["threshold"] and again["holdout"] == metrics["holdout"]
