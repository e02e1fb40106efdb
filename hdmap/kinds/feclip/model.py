"""FE-CLIP torch core: a frozen open_clip visual tower with frequency adapters written back into the token
stream after the tap blocks, a learnable patch -> text-space linear map, fixed normal/damaged prompts."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hdmap.features.backbones import create_clip
from hdmap.kinds.feclip.adapters import LFS_STATS, FrequencyAdapter
from hdmap.setting_rules import check_instance, setting

IMAGE_SCORES = ("cls", "map_max", "cls+map_max")
DEFAULT_PROMPTS = ("A photo of a normal object", "A photo of a damaged object")
# A tiny randomly initialised CLIP (32 px, 2 blocks) for tests and pipeline checks without weights.
TINY_CLIP = {"clip_weights": "none", "taps": [1, 2],
             "clip_kwargs": {"embed_dim": 32,
                             "vision_cfg": {"layers": 2, "width": 64, "patch_size": 8, "image_size": 32,
                                            "head_width": 32},
                             "text_cfg": {"layers": 1, "width": 32, "heads": 2, "context_length": 77,
                                          "vocab_size": 49408}}}


@dataclass(frozen=True)
class FEClipSettings:
    """Defaults follow the paper as described in DESIGN section 5; every ambiguous choice is a setting."""

    clip_model: str = setting("ViT-L-14-336", "the open_clip model")
    clip_weights: str = setting("openai", "open_clip tag (hub), none (random: tests), or a local state-dict file")
    taps: tuple[int, ...] = setting((6, 12, 18, 24), "1-based transformer blocks followed by an adapter", items_low=1,
                                    min_items=1)
    ffe_window: int = setting(3, "P: the FFE's DCT window", low=1)
    lfs_window: int = setting(3, "Q: the LFS's DCT window", low=1)
    lfs_kernel: int = setting(1, "the LFS's convolution kernel", low=1)
    lfs_stat: str = setting("mean", "statistic of a window's band coefficients: mean (paper text), abs_mean, "
                            "log_energy", choices=LFS_STATS)
    band: str | list = setting("all", "DCT band: all / low / mid / high or an explicit P x P mask")
    mix: float = setting(0.1, "lambda: the adapters' share of a token", low=0, high=1)
    prompts: tuple[str, str] = setting(DEFAULT_PROMPTS, "the normal and the anomalous text prompt")
    temperature: float = setting(0.07, "softmax temperature of the text-patch similarity", low=0, low_open=True)
    image_score: str = setting("cls", "image score: the class token through CLIP's frozen projection (cls, the "
                               "paper), the anomaly map's largest value (map_max), or their sum", choices=IMAGE_SCORES)
    patch_norm: bool = setting(True, "CLIP's frozen ln_post on patch tokens before the linear map")
    clip_kwargs: dict = setting(help="a CLIP shape instead of clip_model (tiny random models for tests)",
                                factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "taps", tuple(self.taps))
        object.__setattr__(self, "prompts", tuple(self.prompts))
        check_instance(self)

    def to_dict(self) -> dict:
        return asdict(self)


def tower_shape(feclip: dict) -> dict:
    """{image_size, patch_size, width, layers} of the CLIP vision tower of FE-CLIP settings (a mapping)."""
    from open_clip import get_model_config

    if feclip.get("clip_kwargs"):
        vision = feclip["clip_kwargs"].get("vision_cfg") or {}
    else:
        vision = (get_model_config(feclip["clip_model"]) or {}).get("vision_cfg") or {}
    return {"image_size": int(vision.get("image_size", 224)), "patch_size": int(vision.get("patch_size", 16)),
            "width": int(vision.get("width", 768)), "layers": int(vision.get("layers", 12))}


def describe_clip(settings: dict) -> str:
    """What CLIP really runs under FE-CLIP settings: the named model and weights, or the tiny random model's shape."""
    if settings.get("clip_kwargs"):
        vision = settings["clip_kwargs"]["vision_cfg"]
        return (f"tiny random CLIP ({vision['layers']} blocks, width {vision['width']}, patch {vision['patch_size']}, "
                f"{vision['image_size']} px; no pretrained weights)")
    return f"{settings.get('clip_model', FEClipSettings.clip_model)} / {settings.get('clip_weights', FEClipSettings.clip_weights)}"


def build_clip(config: FEClipSettings) -> nn.Module:
    """The frozen CLIP of these settings (named model and weights, or the tiny shape of `clip_kwargs`)."""
    return create_clip(config.clip_model, config.clip_weights, config.clip_kwargs or None)


class FEClipModel(nn.Module):
    """forward(images) -> {'maps' (B, T, h, w), 'map' (B, h, w), 'tap_scores' (B, T), 'cls_score' (B,),
    'score' (B,) by `image_score`}: probabilities of `damaged`; plus 'patch_tokens' (B, h*w, D), the adapted
    tokens of the last tap (the few-shot memory's features), from the same pass."""

    def __init__(self, config: FEClipSettings | None = None):
        super().__init__()
        import open_clip

        self.config = config or FEClipSettings()
        clip = build_clip(self.config)
        self.visual = clip.visual
        blocks = len(self.visual.transformer.resblocks)
        if any(not 1 <= t <= blocks for t in self.config.taps):
            raise ValueError(f"taps {self.config.taps} outside 1..{blocks} blocks of {self.config.clip_model}")
        width = self.visual.conv1.out_channels
        embed_dim = self.visual.proj.shape[1]
        tokenizer = open_clip.get_tokenizer(self.config.clip_model if not self.config.clip_kwargs else "ViT-B-32")
        with torch.no_grad():
            text = F.normalize(clip.encode_text(tokenizer(list(self.config.prompts))), dim=-1)
        self.register_buffer("text_features", text)  # computed once; the text tower is not kept
        self.adapters = nn.ModuleList(
            FrequencyAdapter(width, self.config.ffe_window, self.config.lfs_window, self.config.band,
                             self.config.lfs_kernel, self.config.mix, self.config.lfs_stat) for _ in self.config.taps)
        self.patch_to_text = nn.Linear(width, embed_dim)

    def train(self, mode: bool = True):
        super().train(mode)
        self.visual.eval()  # frozen tower stays in eval mode
        return self

    def _probability(self, features: torch.Tensor) -> torch.Tensor:
        logits = F.normalize(features, dim=-1) @ self.text_features.T / self.config.temperature
        return logits.softmax(dim=-1)[..., 1]

    def tokens(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Token streams (B, 1 + h*w, D) after each tap block (after its adapter): for tests and analysis."""
        return self._run(images)[0]

    def _run(self, images: torch.Tensor):
        visual = self.visual
        x = visual._embeds(images)
        if not visual.transformer.batch_first:
            x = x.transpose(0, 1)
        side = int(round((x.shape[1] - 1) ** 0.5))
        taps, tapped = {t: i for i, t in enumerate(self.config.taps)}, []
        for index, block in enumerate(visual.transformer.resblocks, start=1):
            x = block(x) if visual.transformer.batch_first else block(x.transpose(0, 1)).transpose(0, 1)
            if index in taps:
                grid = x[:, 1:].reshape(x.shape[0], side, side, -1)
                grid = self.adapters[taps[index]](grid)
                x = torch.cat([x[:, :1], grid.reshape(x.shape[0], side * side, -1)], dim=1)
                tapped.append(x)
            if index == max(self.config.taps):
                break
        return tapped, side

    def patch_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Patch tokens after the last tap (adapted, ln_post-normed): (B, h*w, D), for few-shot memories."""
        tapped, _ = self._run(images)
        return self.visual.ln_post(tapped[-1][:, 1:])

    def forward(self, images: torch.Tensor) -> dict:
        tapped, side = self._run(images)
        maps, scores = [], []
        for x in tapped:
            patches = self.visual.ln_post(x[:, 1:]) if self.config.patch_norm else x[:, 1:]
            maps.append(self._probability(self.patch_to_text(patches)).view(-1, side, side))
            scores.append(self._probability(self.visual.ln_post(x[:, 0]) @ self.visual.proj))
        maps, scores = torch.stack(maps, dim=1), torch.stack(scores, dim=1)
        out = {"maps": maps, "map": maps.mean(dim=1), "tap_scores": scores, "cls_score": scores.mean(dim=1),
               "patch_tokens": self.visual.ln_post(tapped[-1][:, 1:])}
        map_max = out["map"].flatten(1).max(dim=1).values
        out["score"] = {"cls": out["cls_score"], "map_max": map_max,
                        "cls+map_max": out["cls_score"] + map_max}[self.config.image_score]
        return out
