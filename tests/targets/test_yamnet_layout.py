"""YAMNet's channels-last layout computes what the channels-first one did (within float32
rounding, bounds derived in ``tests/targets/yamnet_reference.py``), and hooks see the same."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from and_toolkit.recording.prune import pruned
from and_toolkit.recording.record import record_activations
from and_toolkit.targets.pretrained.yamnet import PatchConv2d, YAMNet
from tests.targets.yamnet_reference import (
    gamma,
    local_bound,
    patchwise_conv_nchw,
    reference_forward,
)

SAMPLES = 15600 + 7680
"""Two patches per clip (1.455 s, YAMNet's padding adds none): patches must not leak."""


def _wav(n: int = 2) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(0).normal(0, 0.1, (n, SAMPLES))
                            .astype(np.float32))


def _averaging_yamnet() -> YAMNet:
    """Random positive weights with rows of unit L1 norm (each output a weighted mean of its
    inputs, so the propagated bound does not grow), small random biases, and a finite
    saturation on every third convolution (the clamp's upper end is exercised)."""
    torch.manual_seed(0)
    net = YAMNet().eval()
    with torch.no_grad():
        for i, m in enumerate(m for m in net.modules() if isinstance(m, PatchConv2d)):
            w = torch.rand_like(m.weight)
            m.weight.copy_(w / w.flatten(1).sum(1).view(-1, 1, 1, 1))
            m.bias.uniform_(-0.05, 0.05)
            if i % 3 == 2:
                m.relu_max.fill_(4.0)
        net.classifier.weight.uniform_(-1 / 32, 1 / 32)
    return net


def _assert_within(got: torch.Tensor, want: torch.Tensor, bound: torch.Tensor, what: str) -> None:
    assert got.shape == want.shape, what
    excess = (got.double() - want.double()).abs() - bound
    assert float(excess.max()) <= 0, f"{what}: exceeds its float32 bound by {excess.max():.3g}"


def test_every_convolution_matches_the_channels_first_layout_on_its_input() -> None:
    """PyTorch's default initialisation (signed weights): every layer, fed the input the model
    fed it, agrees with the channels-first computation within 2 gamma_n (|W||x| + |b|); its
    output keeps the stacked shape [B, C, P * rows, W], in channels-last memory."""
    torch.manual_seed(1)
    net = YAMNet().eval()
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def keep(name: str) -> Any:
        return lambda m, args, out: seen.__setitem__(name, (args[0].clone(), out.clone()))

    handles = [m.register_forward_hook(keep(n)) for n, m in net.named_modules()
               if isinstance(m, PatchConv2d)]
    with torch.no_grad():
        net(_wav())
    for h in handles:
        h.remove()
    assert len(seen) == 27
    modules = dict(net.named_modules())
    for name, (x, y) in seen.items():
        conv = modules[name]
        assert isinstance(conv, PatchConv2d)
        with torch.no_grad():
            want = patchwise_conv_nchw(conv, x.contiguous())
        assert y.shape[2] == 2 * conv.rows_in // conv.stride[0], name
        assert y.is_contiguous(memory_format=torch.channels_last), name
        _assert_within(y, want, local_bound(conv, x), name)


def test_whole_forward_matches_the_channels_first_layout() -> None:
    """Every convolution's output (as its forward hook sees it), the embedding and the logits
    of a whole run agree with the reference run within the propagated float32 bound, which is
    below 5 % of each output's spread (a wrong layout would exceed it)."""
    net = _averaging_yamnet()
    wav = _wav()
    want, bound = reference_forward(net, wav)
    got: dict[str, torch.Tensor] = {}
    handles = [m.register_forward_hook(lambda m, a, out, n=n: got.__setitem__(n, out.clone()))
               for n, m in net.named_modules() if n in want]
    with torch.no_grad():
        got["logits"] = net(wav)
        got["embedding"] = net.embed(wav)
    for h in handles:
        h.remove()
    assert set(got) == set(want) and len(want) == 29
    for name, y in want.items():
        assert float(bound[name].max()) < 0.05 * float(y.std()), name
        _assert_within(got[name], y, bound[name], name)


def test_hooks_pool_and_prune_as_on_the_channels_first_layout() -> None:
    """Recorded (mean-pooled) conv channels and pruned logits equal the reference's: pooled
    bound = mean of the layer's bound + gamma_N mean |y| (N positions)."""
    net = _averaging_yamnet()
    wav = _wav()
    layers = ["layers.0.conv", "layers.4.depthwise", "layers.13.pointwise"]
    want, bound = reference_forward(net, wav)
    rec = record_activations(net, [wav], layers, progress=False)
    for layer in layers:
        y = want[layer]
        pooled_bound = bound[layer].mean(dim=(2, 3)) + gamma(y.shape[2] * y.shape[3]) * (
            y.double().abs().mean(dim=(2, 3)))
        _assert_within(torch.from_numpy(rec[layer]), y.mean(dim=(2, 3)), pooled_bound, layer)
    mask = {"layers.3.depthwise": torch.arange(128) % 3 == 0,
            "layers.6.pointwise": torch.arange(512) < 100}
    cut, cut_bound = reference_forward(net, wav, mask)
    assert float((cut["logits"] - want["logits"]).abs().max()) > 10 * float(
        cut_bound["logits"].max())  # the mask matters
    with torch.no_grad(), pruned(net, mask):
        _assert_within(net(wav), cut["logits"], cut_bound["logits"], "pruned logits")
        rec_cut = record_activations(net, [wav], ["layers.6.pointwise"], progress=False)
    assert np.all(rec_cut["layers.6.pointwise"][:, :100] == 0)


def test_activation_is_in_place_only_without_gradient() -> None:
    """Training (gradients) and inference give the same logits; the in-place clamp does not
    break backward."""
    net = _averaging_yamnet()
    wav = _wav(1)
    with torch.no_grad():
        inference = net(wav)
    net.train()
    out = net(wav)
    out.sum().backward()
    assert net.layers[0].conv.weight.grad is not None
    torch.testing.assert_close(out.detach(), inference, rtol=0, atol=0)
