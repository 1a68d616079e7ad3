"""The number format the networks compute in on this CPU: bfloat16 where the CPU multiplies
it natively, float32 everywhere else.

CPUs with AVX512-BF16 or AMX (recent AMD EPYC and Intel Xeon) run oneDNN's bfloat16
convolutions 2-3x faster than float32: on a 2-core EPYC with AVX512-BF16 the detector infers
in 6-9 instead of 13-25 ms per image and trains in 40 instead of 70-80 ms. Without them
bfloat16 is emulated and 5-10x *slower*, so `auto` only picks it where it is native. The gain
depends on the CPU: a 2-core Intel Xeon (model 207) with AVX512-BF16 but no AMX infers the
detector at 22 instead of 16 images/s and trains it at about the same speed in either format.
Inside a network, convolutions and matrix products run in bfloat16 with float32 accumulation
and activations are kept in bfloat16 (torch.autocast); its outputs and everything downstream
(memory-bank search, heatmaps, losses, thresholds) are float32.

One exception in training: the backward pass of a depthwise convolution (Lite0's MBConv
blocks) is 2.5-3.5x slower in bfloat16 than in float32 on that CPU (oneDNN, channels-last;
its forward pass is faster in bfloat16), so `train_depthwise_in_float32` keeps a network's
depthwise convolutions in float32 while it trains.

`LINEINSPECT_COMPUTE_PRECISION` = auto | float32 | bfloat16 overrides the choice. Scores
differ slightly between the two formats, so each package records the format it was
calibrated in and loading one on a machine that computes in the other logs a warning.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache, lru_cache
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from lineinspect.shared.config import get_settings

Precision = Literal["float32", "bfloat16"]
# CPU flags (as /proc/cpuinfo names them) of native bfloat16 arithmetic.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@lru_cache(maxsize=1)
def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True when the CPU multiplies bfloat16 in hardware and oneDNN can use it."""
    try:
        flags = set()
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("flags"):
                flags.update(line.partition(":")[2].split())
                break
    except OSError:
        return False
    if not flags & NATIVE_BF16_FLAGS:
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def compute_precision() -> Precision:
    """The format this process computes in: the setting, or with `auto` the CPU's best."""
    chosen = get_settings().compute_precision
    if chosen == "auto":
        return "bfloat16" if cpu_has_native_bf16() else "float32"
    return chosen


def uses_bf16() -> bool:
    return compute_precision() == "bfloat16"


@contextmanager
def autocast() -> Iterator[None]:
    """Convolutions and matrix products in bfloat16 inside the block when this process
    computes in bfloat16; a no-op otherwise."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=uses_bf16()):
        yield


class _Float32Forward:
    """Mixin: the module's forward in float32 with autocast off (its output is float32; the
    next convolution under autocast takes it back to bfloat16)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", enabled=False):
            return super().forward(x.float())  # type: ignore[misc]


@cache
def _float32_class(cls: type[nn.Module]) -> type[nn.Module]:
    return type(f"Float32{cls.__name__}", (_Float32Forward, cls), {})


def train_depthwise_in_float32(network: nn.Module) -> int:
    """Make every trainable depthwise convolution of `network` compute in float32 (in place;
    its class is swapped for a float32 subclass, so weights and state-dict keys stay as they
    are). A no-op unless this process computes in bfloat16. Returns how many it changed.

    Measured on a 2-core EPYC with AVX512-BF16, forward + backward of a batch of 16 (5x5,
    channels-last): 144 channels at 80 px 193 ms in bfloat16, 55 ms in float32; 672 at 20 px
    77 and 33 ms. The detector's training step at 320 px: 80-86 -> 60-63 ms per image."""
    if not uses_bf16():
        return 0
    changed = 0
    for module in network.modules():
        if (
            isinstance(module, nn.Conv2d)
            and module.groups > 1
            and module.groups == module.in_channels
            and module.weight.requires_grad
            and not isinstance(module, _Float32Forward)
        ):
            module.__class__ = _float32_class(type(module))
            changed += 1
    return changed


def float32_outputs(outputs: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """A network's output (a tensor or a tuple of them) in float32, as autocast may leave it bfloat16."""
    if isinstance(outputs, torch.Tensor):
        return outputs.float()
    return tuple(o.float() for o in outputs)


class Bf16Inference(torch.nn.Module):
    """Wraps a network for bfloat16 inference: channels-last input, autocast, float32 out
    (a tensor or a tuple of tensors, as the network returns)."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network.eval().to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outputs = self.network(x.contiguous(memory_format=torch.channels_last))
        return float32_outputs(outputs)
