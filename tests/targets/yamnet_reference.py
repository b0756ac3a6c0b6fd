"""YAMNet's forward in the first (channels-first) layout, with a float32 error bound.

The reference for the channels-last :class:`~and_toolkit.targets.pretrained.yamnet.PatchConv2d`
(``tests/targets/test_yamnet_layout.py``, ``benchmarks/bench_yamnet_speed.py``): each patch is cut
out of ``[B, C, P * rows, W]`` by a transpose copy, padded to TF "SAME" with ``F.pad``, convolved
in NCHW memory and stacked back by a second copy.

Error bound (first order, any summation order): a float32 dot product of n terms (a convolution
output with fan-in k plus its bias: n = k + 1) differs from exact arithmetic by at most
``gamma_n * sum |w_i x_i|`` with ``gamma_n = n u / (1 - n u)`` and ``u = 2**-24``; an input error
``e`` adds at most ``|W| e``; the clamp is 1-Lipschitz. So a layer's error is at most
``E' = |W| E + gamma_n (|W| |x| + |b|)`` (``E = 0`` at the first convolution: both layouts share
the front end), a mean of N values adds ``gamma_N mean |x|``. Two float32 implementations of the
same network then differ by at most ``2 E`` (E is computed in float64 along the reference run).
The propagated bound grows with the row sums of ``|W|`` (about 10x per layer for PyTorch's
default initialisation): it is informative for weights whose rows have unit L1 norm;
:func:`local_bound` bounds one layer on a shared input for any weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from and_toolkit.targets.pretrained.yamnet import PatchConv2d, YAMNet

__all__ = ["chain_bound", "gamma", "local_bound", "patchwise_conv_nchw", "reference_forward"]

U = 2.0 ** -24
"""Unit roundoff of float32."""


def gamma(n: int) -> float:
    """Higham's gamma_n = n u / (1 - n u) for float32."""
    return n * U / (1 - n * U)


def patchwise_conv_nchw(conv: PatchConv2d, x: torch.Tensor, weight: torch.Tensor | None = None,
                        bias: torch.Tensor | None = None) -> torch.Tensor:
    """The first layout's ``PatchConv2d.forward``: ``[B, C, P * rows, W]`` (NCHW) -> ``[B, C',
    P * rows', W']`` (NCHW); ``weight`` / ``bias`` replace the module's (for the bound)."""
    b, c, ph, w = x.shape
    p = ph // conv.rows_in
    z = x.reshape(b, c, p, conv.rows_in, w).transpose(1, 2).reshape(b * p, c, conv.rows_in, w)
    half = conv.kernel_size[0] // 2
    same = (0, 1, 0, 1) if conv.stride[0] == 2 else (half, half, half, half)
    z = F.conv2d(F.pad(z, same), conv.weight if weight is None else weight,
                 conv.bias if bias is None else bias, conv.stride, 0, 1, conv.groups)
    c2, h2, w2 = z.shape[1:]
    return z.reshape(b, p, c2, h2, w2).transpose(1, 2).reshape(b, c2, p * h2, w2)


def local_bound(conv: PatchConv2d, x: torch.Tensor) -> torch.Tensor:
    """float64 bound on |a - b| for two float32 implementations a, b of ``conv`` on the same
    input ``x``: ``2 gamma_n (|W| |x| + |b|)`` (n = fan-in + 1)."""
    n = conv.weight[0].numel() + 1
    with torch.no_grad():
        return 2 * gamma(n) * patchwise_conv_nchw(conv, x.double().abs(), conv.weight.double().abs(),
                                                  conv.bias.double().abs())


def chain_bound(convs: Sequence[PatchConv2d], x: torch.Tensor) -> torch.Tensor:
    """float64 bound on |a - b| for two float32 runs of ``convs`` in sequence (each output
    through its activation into the next) from the same input ``x``: ``E' = |W| E +
    local_bound`` along the reference run."""
    e: torch.Tensor | None = None
    with torch.no_grad():
        for conv in convs:
            bound = local_bound(conv, x)
            if e is not None:
                w64 = conv.weight.double().abs()
                bound = bound + patchwise_conv_nchw(conv, e, w64, torch.zeros_like(conv.bias,
                                                                                  dtype=w64.dtype))
            e = bound
            x = conv.activate(patchwise_conv_nchw(conv, x))
    if e is None:
        raise ValueError("chain_bound: no convolutions")
    return e


def _convs(net: YAMNet) -> list[tuple[str, PatchConv2d]]:
    return [(n, m) for n, m in net.named_modules() if isinstance(m, PatchConv2d)]


def reference_forward(net: YAMNet, wav: torch.Tensor,
                      mask: Mapping[str, torch.Tensor] | None = None
                      ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The reference run of ``net`` on waveforms [B, S] with channels ``mask`` ed to zero
    (``{conv path: bool [C]}``, True = zeroed, as :func:`~and_toolkit.recording.prune.pruned`).

    Returns:
        (outputs, bounds): float32 outputs of every convolution (pre-activation, as a forward hook
        sees them, masked), ``"embedding"`` [B, 1024] and ``"logits"`` [B, classes]; float64
        bounds of the same shapes on |any other float32 implementation - these outputs|.
    """
    mask = dict(mask or {})
    outs: dict[str, torch.Tensor] = {}
    bounds: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        x = net.clip_input(net.frontend(wav))
        e = torch.zeros_like(x, dtype=torch.float64)
        for path, conv in _convs(net):
            w64, b64 = conv.weight.double().abs(), conv.bias.double().abs()
            y = patchwise_conv_nchw(conv, x)
            n = conv.weight[0].numel() + 1
            e = patchwise_conv_nchw(conv, e, w64, torch.zeros_like(b64)) + gamma(n) * (
                patchwise_conv_nchw(conv, x.double().abs(), w64, b64))
            if path in mask:
                keep = ~mask[path].view(1, -1, 1, 1)
                y, e = y * keep, e * keep
            outs[path], bounds[path] = y, 2 * e
            x = conv.activate(y.clone())
        positions = x.shape[2] * x.shape[3]
        emb = x.mean(dim=(2, 3))
        e_emb = e.mean(dim=(2, 3)) + gamma(positions) * x.double().abs().mean(dim=(2, 3))
        logits = net.classifier(emb)
        cw, cb = net.classifier.weight.double().abs(), net.classifier.bias.double().abs()
        e_log = e_emb @ cw.T + gamma(cw.shape[1] + 1) * (emb.double().abs() @ cw.T + cb)
    outs["embedding"], bounds["embedding"] = emb, 2 * e_emb
    outs["logits"], bounds["logits"] = logits, 2 * e_log
    return outs, bounds
