"""The cold/warm vocabulary every layer shares: condition names, their codes, and the mapping between them."""
from __future__ import annotations

import torch

COLD, WARM = 0, 1  # codes: the index of the name in CONDITIONS
CONDITIONS = ("cold", "warm")
UNKNOWN = "unknown"
UNKNOWN_CODE = -1


def code_of(name: str) -> int:
    """'cold' -> 0, 'warm' -> 1, anything else (unknown) -> -1."""
    return CONDITIONS.index(name) if name in CONDITIONS else UNKNOWN_CODE


def name_of(code: int) -> str:
    return CONDITIONS[code] if code in (COLD, WARM) else UNKNOWN


def names_of(codes: torch.Tensor) -> list[str]:
    return [name_of(int(c)) for c in codes]


def codes_of(names: list[str], device: torch.device | str = "cpu") -> torch.Tensor:
    """Names -> codes (unknown -> -1) as a long tensor."""
    return torch.tensor([code_of(name) for name in names], dtype=torch.long, device=device)
