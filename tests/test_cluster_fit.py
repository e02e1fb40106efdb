"""A trial's request no node of the Ray cluster can hold is refused before the search starts, naming the flag (Ray
would leave every trial PENDING for ever)."""
import pytest

from hdmap.config import ConfigError
from hdmap.tune.cluster_fit import check_placeable

CPU_NODE = {"Alive": True, "Resources": {"CPU": 2.0, "memory": 1e9}}
GPU_NODE = {"Alive": True, "Resources": {"CPU": 16.0, "GPU": 8.0}}
DEAD_GPU_NODE = {"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}}


def test_requests_a_node_can_hold_pass():
    check_placeable(1, 0, [CPU_NODE])
    check_placeable(2, 0, [CPU_NODE])
    check_placeable(4, 0.25, [CPU_NODE, GPU_NODE])  # a share fits any GPU
    check_placeable(16, 8, [GPU_NODE])


def test_gpus_on_a_cluster_without_them_are_refused_naming_the_flag_and_the_nodes():
    with pytest.raises(ConfigError, match=r"--gpus-per-trial 1: no node of the Ray cluster has 1 GPU\(s\) \(its "
                                          r"nodes: 2 CPU, 0 GPU\); every trial would wait for ever"):
        check_placeable(1, 1, [CPU_NODE, DEAD_GPU_NODE])  # a dead node places nothing
    with pytest.raises(ConfigError, match="--gpus-per-trial 9"):
        check_placeable(1, 9, [GPU_NODE])


def test_more_cpus_than_any_node_has_are_refused():
    with pytest.raises(ConfigError, match="--cpus-per-trial 3: no node of the Ray cluster has 3 CPUs"):
        check_placeable(3, 0, [CPU_NODE])


def test_cpus_and_gpus_that_no_single_node_has_together_are_refused():
    big_cpu = {"Alive": True, "Resources": {"CPU": 32.0}}
    small_gpu = {"Alive": True, "Resources": {"CPU": 4.0, "GPU": 1.0}}
    with pytest.raises(ConfigError, match="no single node of the Ray cluster has both"):
        check_placeable(8, 1, [big_cpu, small_gpu])


@pytest.mark.parametrize("flags, named", [({"gpus_per_trial": 1.0}, "--gpus-per-trial 1"),
                                          ({"cpus_per_trial": 3.0}, "--cpus-per-trial 3")])
def test_a_search_asking_for_what_the_local_cluster_lacks_ends_at_once_and_leaves_no_search(flags, named, synth_root,
                                                                                            tmp_path):
    import ray

    from hdmap.tune.runner import RUN_FILE, SearchOptions, run_search

    ray.shutdown()
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, logging_level="WARNING")
    try:
        options = SearchOptions(data_root=str(synth_root), model="band", num_samples=2, verbose=0, name="never",
                                storage=str(tmp_path / "runs"), cache_dir=str(tmp_path / "cache"), **flags)
        with pytest.raises(ConfigError, match=named):
            run_search(options)
        assert not (tmp_path / "runs" / "never" / RUN_FILE).exists()  # nothing for --resume to find
    finally:
        ray.shutdown()


@pytest.mark.parametrize("name", ["../escaped", "a/b", "/tmp/elsewhere", ".."])
def test_an_experiment_name_that_is_a_path_is_refused(name, synth_root, tmp_path):
    from hdmap.tune.runner import SearchOptions, run_search

    options = SearchOptions(data_root=str(synth_root), model="band", num_samples=1, verbose=0, name=name,
                            storage=str(tmp_path / "runs"), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ConfigError, match="an experiment name is one folder name inside --storage"):
        run_search(options)
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("storage", ["s3://bucket/runs", "gs://b/r", "file:///tmp/runs"])
def test_a_storage_url_is_refused_saying_what_works(storage, tmp_path):
    from hdmap.tune.runner import SearchOptions, run_search

    with pytest.raises(ConfigError, match="a URL is not a storage hdmap can use.*mount"):
        run_search(SearchOptions(model="band", num_samples=1, verbose=0, storage=storage))


@pytest.mark.parametrize("share, concurrent, gpus, expected", [
    (0.25, 8, 8, 1.0),     # the README's old example: 8 trials would pack onto 2 of 8 GPUs
    (0.25, 16, 8, 0.5),    # 16 trials spread 2 per GPU
    (0.25, 32, 8, 0.25),   # 32 trials fill 8 GPUs at 4 each: as asked
    (0.5, 3, 2, 0.5),      # 3 trials on 2 GPUs: 2 + 1, both used
    (1.0, 4, 8, 1.0),      # whole GPUs are never shared: 4 idle, said
    (0.25, 8, 0, 0.25),    # no GPU in the cluster: placement refuses it elsewhere
])
def test_gpu_shares_that_would_leave_gpus_idle_are_spread(share, concurrent, gpus, expected, capsys):
    from hdmap.tune.runner import SearchOptions, gpus_per_trial

    options = SearchOptions(gpus_per_trial=share, max_concurrent=concurrent)
    assert gpus_per_trial(options, cluster_gpus=gpus) == expected
    err = capsys.readouterr().err
    assert ("would leave" in err) == (expected != share or (gpus > concurrent and share == 1.0))


def test_gpus_ray_has_that_torch_cannot_use_are_refused_before_any_trial(synth_root, tmp_path, monkeypatch):
    """A faked cluster: Ray is told of 2 GPUs this machine's torch cannot use (as with a driver older than the CUDA
    build needs): exit 2 naming the host and why, before any trial; nothing for --resume to find."""
    import ray

    from hdmap.tune.gpu_check import ALLOW_CPU_ENV
    from hdmap.tune.runner import RUN_FILE, SearchOptions, run_search

    monkeypatch.delenv(ALLOW_CPU_ENV, raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)  # an in-process trial of another test may have hidden them
    ray.shutdown()
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        options = SearchOptions(data_root=str(synth_root), model="band", num_samples=2, verbose=0, name="never",
                                storage=str(tmp_path / "runs"), cache_dir=str(tmp_path / "cache"),
                                gpus_per_trial=0.5, max_concurrent=4)
        with pytest.raises(ConfigError, match=r"--gpus-per-trial 0.5: torch cannot use the GPUs on .*"
                                              r"HDMAP_ALLOW_CPU_FOR_GPU=1"):
            run_search(options)
        assert not (tmp_path / "runs" / "never" / RUN_FILE).exists()
    finally:
        ray.shutdown()


def test_a_space_whose_largest_setting_overflows_a_trials_gpu_share_is_refused_naming_it(tmp_path):
    """A faked GPU of 16 GiB shared by four trials: the space's 518 px square inputs with wide context on all of
    1000 train maps need more than a quarter of it; the refusal names the setting (and passes with a smaller one)."""
    from hdmap.kinds.registry import kind_of
    from hdmap.tune.gpu_check import check_gpu_memory
    from hdmap.tune.spaces import load_space

    space_file = tmp_path / "s.yaml"
    space_file.write_text("model_name: hdmap_patchcore\nparams:\n  image_size: {choice: [224, 518]}\n"
                          "  resize: {choice: [aspect, bilinear]}\n  model.context_ks: {choice: [[0], [0, 2, 4]]}\n")
    space = load_space(space_file)
    base = space.base_config()
    patches = {224: 7 * 21, 518: 37 * 37}  # a ViT's patch grid: aspect 224 px, and 518 px square

    def map_bytes(size, resize):  # float16 bytes of two taps of 384 channels
        return 2 * 384 * 2 * (patches[size] if resize == "bilinear" or size == 224 else 11 * 37)

    needs = kind_of(base).gpu_memory(space, base, 1000, map_bytes)
    assert "image_size 518 bilinear, model.context_ks [0, 2, 4]" in needs[1]
    with pytest.raises(ConfigError, match=r"--gpus-per-trial 0.25 of a 16 GiB GPU leaves a trial 3.2 GiB; the space's "
                                          r"largest setting needs about .* GiB \(PatchCore's pre-coreset buffer: 1000 "
                                          r"reference maps at image_size 518 bilinear"):
        check_gpu_memory(needs, 0.25, 16 << 30)
    check_gpu_memory(needs, 1.0, 80 << 30)  # a whole 80 GiB GPU holds it


def test_feclip_training_that_overflows_a_trials_gpu_share_is_refused_naming_batch_and_precision(tmp_path):
    """FE-CLIP ViT-L/14@336, batch 16, adapters on blocks 6-24: ~21 GiB of activations in fp32 (over a quarter of an
    80 GiB card), about half under bf16 autocast (which fits)."""
    from hdmap.kinds.registry import default_config, kind_of
    from hdmap.tune.gpu_check import check_gpu_memory
    from hdmap.tune.spaces import load_space

    space_file = tmp_path / "s.yaml"
    space_file.write_text("model_name: feclip\nfixed:\n  train: {precision: '32', batch_size: 16}\nparams: {}\n")
    space = load_space(space_file)
    base = space.base_config()
    needs = kind_of("feclip").gpu_memory(space, base, 1000)
    assert 18 << 30 < needs[0] < 24 << 30 and "train.batch_size 16, 19 blocks" in needs[1]
    with pytest.raises(ConfigError, match=r"FE-CLIP's training activations: train.batch_size 16, 19 blocks .* "
                                          r"train.precision 32"):
        check_gpu_memory(needs, 0.25, 80 << 30)
    half = kind_of("feclip").gpu_memory(space, {**base, "train": {**base["train"], "precision": "bf16-mixed"}}, 1000)
    assert half[0] == needs[0] // 2 or abs(half[0] - needs[0] / 2) < 2
    check_gpu_memory(half, 0.25, 80 << 30)
    assert default_config(model_name="feclip")["train"]["precision"] == "auto"
