"""pytest examples/python: PyTorch's own float32 CPU LayerNorm (forward and autograd backward)
through bnoracle's pytest fixture, every layer-norm case of the catalog and the properties. It
is skipped where PyTorch is not installed."""
import pytest

torch = pytest.importorskip("torch")

from torch_layer_norm import TorchLayerNorm  # noqa: E402  (after the skip)


def test_pytorch_layer_norm_is_conformant(bnoracle):
    bnoracle.check(TorchLayerNorm(), op="layer_norm", property_cases=10)


def test_tensors_go_to_judge_as_they_are(bnoracle):
    # A tensor that requires grad, and its bfloat16 copy: judge reads both without a conversion
    # by the caller (bfloat16 widened exactly, the data type taken from the tensor).
    x = torch.randn(8, 64, generator=torch.Generator().manual_seed(bnoracle.seed),
                    requires_grad=True)
    y = torch.nn.functional.layer_norm(x, (64,))
    bnoracle.assert_conformant("layer_norm", "forward_training", x, {"dst": y})
    xb = x.detach().to(torch.bfloat16)
    # Normalized in float32 and cast once to bfloat16: the best a bfloat16 kernel can do.
    yb = torch.nn.functional.layer_norm(xb.float(), (64,)).to(torch.bfloat16)
    bnoracle.assert_conformant("layer_norm", "forward_training", xb, {"dst": yb})
