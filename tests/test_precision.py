"""The number format the networks compute in: bfloat16 only where the CPU has it natively or
the setting asks for it, float32 results either way, and packages that say which they used."""

import copy
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from lineinspect.shared.config import get_settings
from lineinspect.shared.models.backbone import Lite0Features, frozen_for_inference
from lineinspect.shared.models.package import load_package, save_package
from lineinspect.shared.models.precision import (
    Bf16Inference,
    autocast,
    compute_precision,
    cpu_has_native_bf16,
    train_depthwise_in_float32,
)


@pytest.fixture
def precision_setting(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """Set LINEINSPECT_COMPUTE_PRECISION for one test."""

    def choose(value: str) -> None:
        monkeypatch.setenv("LINEINSPECT_COMPUTE_PRECISION", value)
        get_settings.cache_clear()

    yield choose
    monkeypatch.delenv("LINEINSPECT_COMPUTE_PRECISION", raising=False)
    get_settings.cache_clear()


def test_auto_needs_native_bfloat16_flags_in_cpuinfo(tmp_path: Path) -> None:
    avx2_only = tmp_path / "avx2"
    avx2_only.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw\n")
    assert cpu_has_native_bf16(avx2_only) is False
    with_bf16 = tmp_path / "bf16"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512bw avx512_bf16 avx512_vnni\n")
    assert cpu_has_native_bf16(with_bf16) is bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert cpu_has_native_bf16(tmp_path / "absent") is False


def test_the_setting_chooses_how_networks_are_prepared(precision_setting) -> None:
    features = Lite0Features((4,), pretrained=False)
    example = torch.zeros(1, 3, 64, 64)
    precision_setting("float32")
    assert compute_precision() == "float32"
    assert isinstance(frozen_for_inference(features, example), torch.jit.ScriptModule)
    precision_setting("bfloat16")
    assert compute_precision() == "bfloat16"
    assert isinstance(frozen_for_inference(features, example), Bf16Inference)


def test_float32_form_has_the_symmetric_paddings_in_its_convolutions_and_leaves_the_module_alone(precision_setting) -> None:
    precision_setting("float32")
    torch.manual_seed(0)
    features = Lite0Features((4, 10), pretrained=True).eval()
    images = torch.randn(2, 3, 96, 96)
    paddings = [m for m in features.modules() if isinstance(m, torch.nn.ZeroPad2d)]
    one_sided = [p for p in paddings if p.padding[0] != p.padding[1] or p.padding[2] != p.padding[3]]
    assert len(one_sided) < len(paddings), "Lite0 should have symmetric 'same' paddings to fold"
    with torch.inference_mode():
        expected = features(images)
        frozen = frozen_for_inference(features, images[:1])
        result = frozen(images)
    # Only the one-sided paddings of stride-2 convolutions are still separate ops.
    explicit = [n for n in frozen.graph.nodes() if n.kind() in ("aten::pad", "aten::constant_pad_nd")]
    assert len(explicit) == len(one_sided)
    # The caller's module is untouched (training goes on with it) and the numbers are the same.
    assert [m for m in features.modules() if isinstance(m, torch.nn.ZeroPad2d)] == paddings
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in features.modules())
    for reference, output in zip(expected, result):
        assert torch.allclose(reference, output, rtol=1e-4, atol=1e-4 * float(reference.abs().max()))


def test_bfloat16_inference_gives_float32_features_close_to_float32() -> None:
    torch.manual_seed(0)
    features = Lite0Features((4, 10), pretrained=True).eval()
    images = torch.randn(2, 3, 128, 128)
    with torch.inference_mode():
        exact = features(images)
        approximate = Bf16Inference(features)(images)
    assert isinstance(approximate, tuple) and len(approximate) == 2
    for reference, result in zip(exact, approximate):
        assert result.dtype == torch.float32 and result.shape == reference.shape
        relative = (result - reference).norm() / reference.norm()
        assert relative < 0.08, f"bfloat16 features {relative:.3f} away from float32 (relative L2)"


def test_trainable_depthwise_convolutions_train_in_float32_under_bfloat16(precision_setting) -> None:
    features = Lite0Features((4,), pretrained=False)
    for frozen in (features.stem, *features.blocks[:3]):
        frozen.requires_grad_(False)
    keys = list(features.state_dict())
    precision_setting("float32")
    assert train_depthwise_in_float32(features) == 0
    precision_setting("bfloat16")
    # Blocks 3 and 4 train: one depthwise convolution each. The frozen ones keep bfloat16
    # (their forward pass is faster in it, and they have no backward pass).
    assert train_depthwise_in_float32(features) == 2
    assert list(features.state_dict()) == keys
    trained, frozen = features.blocks[4]._depthwise_conv, features.blocks[1]._depthwise_conv
    seen: dict[str, torch.dtype] = {}
    trained.register_forward_hook(lambda module, args, output: seen.__setitem__("trained", output.dtype))
    frozen.register_forward_hook(lambda module, args, output: seen.__setitem__("frozen", output.dtype))
    with autocast():
        out = features(torch.randn(2, 3, 64, 64))[0]
    out.float().sum().backward()
    assert seen == {"trained": torch.float32, "frozen": torch.bfloat16}
    assert trained.weight.grad is not None and trained.weight.grad.dtype == torch.float32
    # A copy (the weights' moving average is one) keeps computing in float32.
    assert type(copy.deepcopy(features).blocks[4]._depthwise_conv) is type(trained)
    assert train_depthwise_in_float32(features) == 0


def test_a_package_records_the_format_it_was_calibrated_in(tmp_path: Path, precision_setting) -> None:
    precision_setting("bfloat16")
    saved = save_package(tmp_path / "pkg", "anomaly", {"w": torch.ones(2)}, training_data={"images": 3})
    assert saved.manifest.training_data == {"images": 3, "compute_precision": "bfloat16"}
    precision_setting("float32")
    # Loading in the other format works (with a warning in the log) and keeps the record.
    assert load_package(tmp_path / "pkg").manifest.training_data["compute_precision"] == "bfloat16"


@pytest.mark.parametrize("kind", ["features", "mask", "reviewer", "detector"])
def test_folding_batch_norms_and_paddings_keeps_every_network_the_same(kind: str) -> None:
    from lineinspect.shared.models.backbone import folded_for_inference
    from lineinspect.shared.models.detector.torch_model import DetectorNet
    from lineinspect.shared.models.mask.torch_model import MaskNet
    from lineinspect.shared.models.reviewer.torch_model import ReviewerNet

    torch.manual_seed(0)
    network, channels = {
        "features": (Lite0Features((4, 10), pretrained=True), 3),
        "mask": (MaskNet(), 3),
        "reviewer": (ReviewerNet(), 4),
        "detector": (DetectorNet(3), 3),
    }[kind]
    network.eval()
    # Batch norms with learnt-looking statistics, so folding them is not a no-op.
    for norm in (m for m in network.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        norm.running_mean.uniform_(-0.5, 0.5)
        norm.running_var.uniform_(0.5, 2.0)
    images = torch.randn(2, channels, 96, 96)
    with torch.inference_mode():
        before = network(images)
        folded = folded_for_inference(network)
        after = folded(images)
    remaining = [m for m in folded.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert remaining == [], f"{len(remaining)} batch norms left unfolded"
    for reference, result in zip(*(o if isinstance(o, tuple) else (o,) for o in (before, after))):
        assert torch.allclose(reference, result, rtol=1e-3, atol=1e-3 * float(reference.abs().max()))
