"""Buffers whose size is only known after fitting: loading a state dict takes the saved shapes."""
from __future__ import annotations

from torch import nn


class ResizableBuffers(nn.Module):
    """load_state_dict into a fresh (unfitted) module resizes its buffers to the saved tensors."""

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name, buffer in list(self._buffers.items()):
            saved = state_dict.get(prefix + name)
            if buffer is not None and saved is not None and saved.shape != buffer.shape:
                self._buffers[name] = saved.new_empty(saved.shape).to(buffer.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
