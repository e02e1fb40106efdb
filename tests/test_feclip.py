import numpy as np
import pytest
import torch

from hdmap.data.band_anomalies import band_training_set
from hdmap.data.map_files import discover_domain, read_map
from hdmap.data.transforms import MapTransform
from hdmap.evaluation.metrics import auroc
from hdmap.kinds.feclip.adapters import FFE, LFS, LFS_STATS, FrequencyAdapter, band_statistic
from hdmap.kinds.feclip.losses import feclip_loss
from hdmap.kinds.feclip.dct import band_mask, dct2, dct_matrix, idct2
from hdmap.kinds.feclip.model import FEClipModel, FEClipSettings
from hdmap.kinds.feclip.module import FEClipModule

TINY_CLIP = {"embed_dim": 32,
             "vision_cfg": {"layers": 4, "width": 64, "patch_size": 8, "image_size": 64, "head_width": 32},
             "text_cfg": {"layers": 1, "width": 32, "heads": 2, "context_length": 77, "vocab_size": 49408}}
TINY = {"clip_weights": "none", "taps": (1, 2, 3, 4), "clip_kwargs": TINY_CLIP}


def test_dct_is_orthonormal_and_invertible():
    c = dct_matrix(5)
    assert torch.allclose(c @ c.T, torch.eye(5), atol=1e-6)
    x = torch.randn(2, 3, 5, 5)
    assert torch.allclose(idct2(dct2(x, c), c), x, atol=1e-5)
    assert torch.allclose(dct2(torch.ones(5, 5), c)[0, 0], torch.tensor(5.0))  # DC of ones = n


def test_band_masks():
    assert band_mask(3, "low").tolist() == [[1, 1, 0], [1, 0, 0], [0, 0, 0]]
    assert band_mask(3, "mid").tolist() == [[0, 0, 1], [0, 1, 0], [1, 0, 0]]
    assert band_mask(3, "high").tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 1]]
    assert (band_mask(3, "low") + band_mask(3, "mid") + band_mask(3, "high") == 1).all()
    with pytest.raises(ValueError):
        band_mask(3, [[1, 0], [0, 1]])


def _window_spectra(grid: torch.Tensor, p: int) -> torch.Tensor:
    """DCT coefficients of the non-overlapping p x p windows of a (B, H, W, D) grid (H, W multiples of p)."""
    b, h, w, d = grid.shape
    windows = grid.reshape(b, h // p, p, w // p, p, d).permute(0, 1, 3, 5, 2, 4)
    return dct2(windows, dct_matrix(p))


@pytest.mark.parametrize("band", ["low", "mid", "high"])
def test_band_ffe_output_has_no_energy_outside_its_band(band):
    torch.manual_seed(0)
    ffe = FFE(8, 3, band)
    with torch.no_grad():
        out = ffe(torch.randn(2, 6, 9, 8))
    spectra = _window_spectra(out, 3)
    outside = spectra * (1 - band_mask(3, band))
    inside = spectra * band_mask(3, band)
    assert outside.abs().max() < 1e-5 and inside.abs().max() > 1e-2


def test_low_band_ffe_ignores_high_frequencies():
    """A low-band FFE gives the same output whether or not a high-frequency pattern is added to its input."""
    torch.manual_seed(0)
    ffe = FFE(4, 3, "low")
    spectrum = torch.zeros(3, 3)
    spectrum[2, 2] = 1.0  # highest frequency only
    high = idct2(spectrum, dct_matrix(3))[None, :, :, None].repeat(1, 2, 3, 4)  # tiled over 2 x 3 windows
    grid = torch.randn(1, 6, 9, 4)
    with torch.no_grad():
        assert torch.allclose(ffe(grid + 5 * high), ffe(grid), atol=1e-5)


def test_lfs_statistics_differ_and_only_mean_is_linear():
    """`mean` of a window's DCT is a linear filter (the issue with the paper's text); abs_mean and log_energy
    are not, and each statistic gives a different adapter output."""
    torch.manual_seed(0)
    a, b = torch.randn(4, 3, 3), torch.randn(4, 3, 3)
    c, mask = dct_matrix(3), band_mask(3, "all")

    def stat(window, name):
        return band_statistic(dct2(window, c), mask, name)

    assert torch.allclose(stat(a + b, "mean"), stat(a, "mean") + stat(b, "mean"), atol=1e-5)
    for name in ("abs_mean", "log_energy"):
        assert not torch.allclose(stat(a + b, name), stat(a, name) + stat(b, name), atol=1e-3)
        assert (stat(a, name) >= 0).all()
    grid, outputs = torch.randn(1, 5, 7, 4), []
    for name in LFS_STATS:
        torch.manual_seed(1)
        with torch.no_grad():
            outputs.append(LFS(4, 3, stat=name)(grid))
    assert all(not torch.allclose(x, y) for i, x in enumerate(outputs) for y in outputs[i + 1:])
    with pytest.raises(ValueError, match="lfs_stat"):
        LFS(4, 3, stat="median")


@pytest.mark.parametrize("h, w", [(6, 9), (7, 10), (1, 1)])
def test_adapter_shapes_with_padding(h, w):
    grid = torch.randn(2, h, w, 16)
    assert FFE(16, 3)(grid).shape == grid.shape
    assert LFS(16, 3)(grid).shape == grid.shape
    assert LFS(16, 3, kernel=3)(grid).shape == grid.shape


def test_adapter_parameter_count_at_paper_size():
    adapters = [FrequencyAdapter(1024) for _ in range(4)]
    linear = torch.nn.Linear(1024, 768)
    count = sum(p.numel() for a in adapters for p in a.parameters()) + sum(p.numel() for p in linear.parameters())
    assert count == 8 * 1_049_600 + 787_200 == 9_184_000


def test_lambda_zero_gives_frozen_clip_tokens():
    model = FEClipModel(FEClipSettings(**{**TINY, "mix": 0.0}))
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        x = model.visual._embeds(images)
        for block in model.visual.transformer.resblocks:
            x = block(x)
        ours = model.tokens(images)[-1]
    assert torch.equal(ours, x)


def _band_batch(synth_root, n=48, seed=0):
    items = discover_domain(synth_root, "A")["train"]
    maps = np.stack([read_map(i.path) for i in items[:n]])
    images, masks, labels = band_training_set(maps, 0.5, seed)
    transform = MapTransform(64, "bilinear", "clip", 8)
    return {"image": transform.batch(list(images)), "mask": torch.from_numpy(masks), "label": torch.from_numpy(labels)}


def test_training_lowers_loss_raises_pixel_auroc_and_keeps_clip_frozen(synth_root):
    torch.manual_seed(0)
    module = FEClipModule(model=TINY, lr=3e-3, linear_lr=3e-3)
    frozen = {k: v.clone() for k, v in module.model.visual.state_dict().items()}
    batch = _band_batch(synth_root)
    optimizer = module.configure_optimizers()

    def pixel_auroc():
        with torch.no_grad():
            out = module.model(batch["image"])
            maps = torch.nn.functional.interpolate(out["map"][:, None], size=(31, 95), mode="bilinear")[:, 0]
        return auroc(maps.flatten().numpy(), batch["mask"].flatten().numpy())

    before_auroc = pixel_auroc()
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        loss = feclip_loss(module.model(batch["image"]), batch["mask"].float(), batch["label"])
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.95 * np.mean(losses[:5])  # tiny random text embeddings bound the loss
    assert pixel_auroc() > before_auroc + 0.1
    assert all(torch.equal(frozen[k], v) for k, v in module.model.visual.state_dict().items())
    assert all(not p.requires_grad for p in module.model.visual.parameters())


def test_checkpoint_holds_only_trained_parameters_and_reloads(tmp_path, synth_root):
    import lightning as L

    module = FEClipModule(model=TINY)
    with torch.no_grad():
        for p in module.model.adapters.parameters():
            p.add_(0.01)
    trainer = L.Trainer(max_epochs=0, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(tmp_path / "feclip.ckpt")
    saved = torch.load(tmp_path / "feclip.ckpt", weights_only=False)["state_dict"]
    assert saved and not any(k.startswith("model.visual.") for k in saved)
    reloaded = FEClipModule.load_from_checkpoint(tmp_path / "feclip.ckpt")
    images = _band_batch(synth_root, n=4)["image"]
    with torch.no_grad():
        assert torch.equal(reloaded.model(images)["map"], module.model(images)["map"])


def test_image_score_setting_picks_cls_map_max_or_their_sum():
    torch.manual_seed(0)
    images = torch.randn(2, 3, 64, 64)
    outputs = {}
    for score in ("cls", "map_max", "cls+map_max"):
        torch.manual_seed(1)  # the same adapters for every setting
        model = FEClipModel(FEClipSettings(**{**TINY, "image_score": score}))
        with torch.no_grad():
            outputs[score] = model(images)
    out = outputs["cls"]
    assert torch.equal(out["score"], out["cls_score"])
    assert torch.allclose(outputs["map_max"]["score"], out["map"].flatten(1).max(dim=1).values)
    assert torch.allclose(outputs["cls+map_max"]["score"], out["cls_score"] + outputs["map_max"]["score"])
    with pytest.raises(ValueError, match="image_score"):
        FEClipSettings(image_score="mean_map")
