"""Numeric precision and memory layout per device: mixed precision and channels_last on CUDA."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Precision:
    autocast_dtype: torch.dtype | None  # None: full float32
    channels_last: bool  # NHWC layout: faster convolutions on tensor cores

    def autocast(self, device: torch.device):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.autocast_dtype)

    @property
    def needs_loss_scaling(self) -> bool:
        return self.autocast_dtype == torch.float16  # bfloat16 has float32's range


FULL = Precision(autocast_dtype=None, channels_last=False)


def precision_for(device: torch.device, *, bf16_supported: bool | None = None) -> Precision:
    """bfloat16 autocast where the GPU supports it, else float16 with loss scaling; float32 on CPUs."""
    if device.type != "cuda":
        return FULL
    bf16 = torch.cuda.is_bf16_supported() if bf16_supported is None else bf16_supported
    return Precision(autocast_dtype=torch.bfloat16 if bf16 else torch.float16, channels_last=True)
