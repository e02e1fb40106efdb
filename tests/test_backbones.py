import pytest
import torch
import torch.nn.functional as F

from hdmap.features.backbones import BackboneSpec, BackboneWeightsError, build_backbone

TINY_VIT = BackboneSpec(name="dinov2_vits14", weights="none", taps=(0, 1),
                        model_kwargs={"depth": 2, "embed_dim": 48, "num_heads": 2})


def test_offline_efficientnet_predicts_imagenet_classes():
    data = pytest.importorskip("skimage.data")
    backbone = build_backbone(BackboneSpec())
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in backbone.mean_std)
    expected = {"chelsea": set(range(281, 286)), "coffee": {967, 968}}  # cats; espresso / cup
    for name, classes in expected.items():
        image = torch.tensor(getattr(data, name)()).permute(2, 0, 1)[None].float() / 255
        image = F.interpolate(image, size=(224, 224), mode="bilinear", antialias=True)
        with torch.no_grad():
            top = backbone.model((image - mean) / std).argmax(-1).item()
        assert top in classes, f"{name}: predicted ImageNet class {top}"


def test_cnn_taps_grids():
    backbone = build_backbone(BackboneSpec(taps=(1, 2)))
    grids = backbone(torch.randn(2, 3, 64, 192))
    assert [g.shape for g in grids] == [(2, 24, 16, 48), (2, 40, 8, 24)]
    assert backbone.stride == 8


def test_vit_patch_grid_without_class_token():
    backbone = build_backbone(TINY_VIT)
    grids = backbone(torch.randn(1, 3, 126, 378))
    assert [g.shape for g in grids] == [(1, 48, 9, 27)] * 2 and backbone.stride == 14


def test_clip_visual_tower_taps():
    backbone = build_backbone(BackboneSpec(name="clip:ViT-B-32", weights="none", taps=(0,)))
    assert backbone(torch.randn(1, 3, 224, 224))[0].shape == (1, 768, 7, 7)


def test_local_weights_file_and_missing_file(tmp_path):
    source = build_backbone(TINY_VIT)
    path = tmp_path / "vit.pth"
    torch.save(source.model.state_dict(), path)
    loaded = build_backbone(BackboneSpec(**{**TINY_VIT.__dict__, "weights": str(path)}))
    x = torch.randn(1, 3, 28, 28)
    assert torch.equal(source(x)[0], loaded(x)[0])
    with pytest.raises(BackboneWeightsError, match="not found"):
        build_backbone(BackboneSpec(**{**TINY_VIT.__dict__, "weights": str(tmp_path / "nope.pth")}))
    with pytest.raises(BackboneWeightsError, match="not found"):  # a folder is not a weights file
        build_backbone(BackboneSpec(**{**TINY_VIT.__dict__, "weights": str(tmp_path)}))
    state = source.model.state_dict()
    extra = {**state, "head.extra.weight": torch.zeros(2)}
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(BackboneWeightsError, match="1 unexpected"):  # unexpected tensors are not dropped silently
        build_backbone(BackboneSpec(**{**TINY_VIT.__dict__, "weights": str(tmp_path / "extra.pth")}))
    torch.save({k: v for i, (k, v) in enumerate(state.items()) if i}, tmp_path / "short.pth")
    with pytest.raises(BackboneWeightsError, match="1 tensors missing"):
        build_backbone(BackboneSpec(**{**TINY_VIT.__dict__, "weights": str(tmp_path / "short.pth")}))


def test_a_clip_weights_path_that_is_not_a_file_is_an_error_for_fe_clip_and_clip_backbones(tmp_path):
    """One CLIP builder serves both: the same check, the same error."""
    from hdmap.features.backbones import BackboneWeightsError
    from hdmap.kinds.feclip.model import TINY_CLIP, FEClipSettings, build_clip

    with pytest.raises(BackboneWeightsError, match="not a file"):
        build_clip(FEClipSettings(**{**TINY_CLIP, "clip_weights": str(tmp_path)}))
    with pytest.raises(BackboneWeightsError, match="not a file"):
        build_backbone(BackboneSpec(name="clip:ViT-B-32", weights=str(tmp_path), taps=(0,)))


def test_unknown_backbone():
    with pytest.raises(KeyError, match="unknown backbone"):
        build_backbone(BackboneSpec(name="resnet9000"))
