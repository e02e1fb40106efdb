import numpy as np
import pytest
import torch

from hdmap.data.band_anomalies import band_training_set
from hdmap.data.hdmap import discover_domain, read_map
from hdmap.data.transforms import MapTransform
from hdmap.evaluation.metrics import auroc
from hdmap.models.feclip.adapters import FFE, LFS, FrequencyAdapter
from hdmap.models.feclip.losses import feclip_loss
from hdmap.models.feclip.dct import band_mask, dct2, dct_matrix, idct2
from hdmap.models.feclip.model import FEClip, FEClipConfig
from hdmap.models.feclip.module import FEClipModule

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


def test_low_band_ffe_ignores_high_frequencies():
    """With a low-pass mask, a pure high-frequency window input reaches the linear layer as zeros."""
    ffe = FFE(4, 3, "low")
    c = dct_matrix(3)
    spectrum = torch.zeros(3, 3)
    spectrum[2, 2] = 1.0  # highest frequency only
    window = idct2(spectrum, c)
    grid = window[None, :, :, None].repeat(1, 1, 1, 4)
    expected = idct2(torch.nn.functional.gelu(ffe.linear.bias)[:, None, None].expand(4, 3, 3), c).permute(1, 2, 0)
    assert torch.allclose(ffe(grid)[0], expected, atol=1e-5)


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
    model = FEClip(FEClipConfig(**{**TINY, "mix": 0.0}))
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
