"""LeNet-5's building blocks, first in numpy (loops, then vectorized), then as torch modules.

The numpy functions are for reading: each loop version spells out the formula, the vectorized
version computes the same numbers fast, and the tests check both against ``torch``. The torch
modules are what :mod:`lenet_course.models` assembles:

* :class:`ScaledTanh`   - the squashing function f(a) = 1.7159 tanh(2a/3);
* :class:`Subsampling`  - S2/S4: the sum of each 2x2 block times a trainable coefficient, plus a
  trainable bias (one of each per map);
* :class:`SparseConv2d` - C3: a convolution in which only the pairs of maps listed in Table I
  are connected;
* :class:`RBFOutput`    - the Euclidean RBF output units with fixed 7x12 bitmaps
  (:func:`rbf_prototypes`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn

from lenet_course.paper import C3_TABLE, A, S

__all__ = [
    "conv2d_loops", "conv2d", "subsample_loops", "subsample", "c3_mask", "sparse_conv2d",
    "squash", "squash_grad", "rbf", "rbf_prototypes",
    "ScaledTanh", "Subsampling", "SparseConv2d", "RBFOutput",
]


def _float_arrays(*arrays) -> list[np.ndarray]:
    """The arrays as numpy, in one common floating dtype (float32 stays float32)."""
    arrays = [np.asarray(a) for a in arrays]
    dtype = np.result_type(*arrays, np.float32)
    return [a.astype(dtype, copy=False) for a in arrays]


# --------------------------------------------------------------------------------------------
# Convolution (C1, C3, C5)
# --------------------------------------------------------------------------------------------

def _check_conv(x, w, b) -> list[np.ndarray]:
    x, w, b = _float_arrays(x, w, b)
    if x.ndim != 4:
        raise ValueError(f"x must be a batch of maps (N, C, H, W), got shape {x.shape}")
    if w.ndim != 4:
        raise ValueError(f"w must be kernels (K, C, kh, kw), got shape {w.shape}")
    if w.shape[1] != x.shape[1]:
        raise ValueError(f"w must have one kernel slice per input map: x has C={x.shape[1]} maps, "
                         f"so w must be (K, {x.shape[1]}, kh, kw), got {w.shape}")
    if b.shape != (w.shape[0],):
        raise ValueError(f"b must hold one bias per kernel: expected shape ({w.shape[0]},), got {b.shape}")
    if w.shape[2] > x.shape[2] or w.shape[3] > x.shape[3]:
        raise ValueError(f"kernels {w.shape[2]}x{w.shape[3]} do not fit in maps {x.shape[2]}x{x.shape[3]}")
    return [x, w, b]


def conv2d_loops(x, w, b) -> np.ndarray:
    """Valid 2-D cross-correlation, one output value at a time (the formula, for reading).

    ``y[n, k, i, j] = b[k] + sum over c, u, v of x[n, c, i + u, j + v] * w[k, c, u, v]``

    x ``(N, C, H, W)``, w ``(K, C, kh, kw)``, b ``(K,)`` -> y ``(N, K, H - kh + 1, W - kw + 1)``.
    Like ``torch.nn.functional.conv2d``, the kernel is not flipped.
    """
    x, w, b = _check_conv(x, w, b)
    n_images, _, height, width = x.shape
    n_kernels, _, kh, kw = w.shape
    y = np.empty((n_images, n_kernels, height - kh + 1, width - kw + 1), dtype=x.dtype)
    for n in range(n_images):
        for k in range(n_kernels):
            for i in range(y.shape[2]):
                for j in range(y.shape[3]):
                    patch = x[n, :, i:i + kh, j:j + kw]  # (C, kh, kw): the receptive field
                    y[n, k, i, j] = np.sum(patch * w[k]) + b[k]
    return y


def conv2d(x, w, b) -> np.ndarray:
    """Valid 2-D cross-correlation, vectorized: the same numbers as :func:`conv2d_loops`.

    x ``(N, C, H, W)``, w ``(K, C, kh, kw)``, b ``(K,)`` -> ``(N, K, H - kh + 1, W - kw + 1)``.
    Every receptive field is viewed at once (no copy) as ``(N, C, H', W', kh, kw)``, then one
    ``einsum`` sums over channel and kernel offsets.
    """
    x, w, b = _check_conv(x, w, b)
    windows = sliding_window_view(x, w.shape[2:], axis=(2, 3))  # (N, C, H', W', kh, kw)
    return np.einsum("nchwuv,kcuv->nkhw", windows, w, optimize=True) + b[:, None, None]


# --------------------------------------------------------------------------------------------
# Subsampling (S2, S4)
# --------------------------------------------------------------------------------------------

def _check_subsample(x, coef, bias) -> list[np.ndarray]:
    x, coef, bias = _float_arrays(x, coef, bias)
    if x.ndim != 4 or x.shape[2] < 2 or x.shape[3] < 2:
        raise ValueError(f"x must be a batch of maps (N, C, H, W) with H, W >= 2, got shape {x.shape}")
    for name, value in (("coef", coef), ("bias", bias)):
        if value.shape != (x.shape[1],):
            raise ValueError(f"{name} must hold one value per map: expected shape ({x.shape[1]},), "
                             f"got {value.shape}")
    return [x, coef, bias]


def subsample_loops(x, coef, bias) -> np.ndarray:
    """The paper's trainable 2x2 subsampling, before the squashing, one output at a time.

    ``y[n, c, i, j] = coef[c] * (sum of the 2x2 block x[n, c, 2i:2i+2, 2j:2j+2]) + bias[c]``

    x ``(N, C, H, W)``, coef ``(C,)``, bias ``(C,)`` -> ``(N, C, H // 2, W // 2)``. The blocks do
    not overlap; an odd last row or column is dropped, as in torch's pooling.
    """
    x, coef, bias = _check_subsample(x, coef, bias)
    n_images, n_maps, height, width = x.shape
    y = np.empty((n_images, n_maps, height // 2, width // 2), dtype=x.dtype)
    for n in range(n_images):
        for c in range(n_maps):
            for i in range(y.shape[2]):
                for j in range(y.shape[3]):
                    block = x[n, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
                    y[n, c, i, j] = coef[c] * block.sum() + bias[c]
    return y


def subsample(x, coef, bias) -> np.ndarray:
    """Vectorized :func:`subsample_loops`: x ``(N, C, H, W)`` -> ``(N, C, H // 2, W // 2)``.

    Reshaping ``(H, W)`` to ``(H/2, 2, W/2, 2)`` puts each 2x2 block on two axes of its own.
    """
    x, coef, bias = _check_subsample(x, coef, bias)
    n_images, n_maps, height, width = x.shape
    h, w = height // 2, width // 2
    blocks = x[:, :, :2 * h, :2 * w].reshape(n_images, n_maps, h, 2, w, 2)
    return coef[:, None, None] * blocks.sum(axis=(3, 5)) + bias[:, None, None]


# --------------------------------------------------------------------------------------------
# C3's connection table
# --------------------------------------------------------------------------------------------

def c3_mask(table: Sequence[Sequence[int]] = C3_TABLE, in_channels: int = 6) -> np.ndarray:
    """Table I as a 0/1 matrix: ``mask[k, c] == 1`` when input map c feeds output map k.

    ``table`` lists, for each output map, the input maps it reads (numbered from 0); the default
    gives the paper's ``(16, 6)`` mask with 60 ones. Returns float64 ``(len(table), in_channels)``.
    """
    mask = np.zeros((len(table), in_channels))
    for k, inputs in enumerate(table):
        inputs = tuple(inputs)
        if not inputs:
            raise ValueError(f"table[{k}] is empty: every output map needs at least one input map")
        if len(set(inputs)) != len(inputs):
            raise ValueError(f"table[{k}] = {inputs} lists an input map twice")
        for c in inputs:
            if not isinstance(c, (int, np.integer)) or not 0 <= c < in_channels:
                raise ValueError(f"table[{k}] = {inputs}: input maps must be integers "
                                 f"0..{in_channels - 1}, got {c!r}")
            mask[k, c] = 1.0
    return mask


def sparse_conv2d(x, w, b, mask) -> np.ndarray:
    """C3's convolution: :func:`conv2d` in which only the connected (output, input) pairs count.

    x ``(N, C, H, W)``, w ``(K, C, kh, kw)``, b ``(K,)``, mask ``(K, C)`` of 0/1 (from
    :func:`c3_mask`) -> ``(N, K, H - kh + 1, W - kw + 1)``. Output map k sums only over the
    input maps c with ``mask[k, c] == 1``: the kernel slices of the others are zeroed.
    """
    mask = np.asarray(mask)
    w = np.asarray(w)
    if w.ndim != 4 or mask.shape != w.shape[:2]:
        raise ValueError(f"mask must be (K, C) for kernels w of shape (K, C, kh, kw): "
                         f"got mask {mask.shape} and w {w.shape}")
    if not np.isin(mask, (0, 1)).all():
        raise ValueError("mask must hold only 0 and 1")
    return conv2d(x, w * mask[:, :, None, None], b)


# --------------------------------------------------------------------------------------------
# The squashing function
# --------------------------------------------------------------------------------------------

def squash(a) -> np.ndarray:
    """The paper's squashing function ``f(a) = A tanh(S a)`` (A = 1.7159, S = 2/3), elementwise.

    Any shape in, the same shape (and float dtype: float32 stays float32) out. ``f(1) = 1``, ``f(-1) = -1``, and ``|f(a)| < 1.7159``.
    """
    (a,) = _float_arrays(a)
    return (A * np.tanh(S * a)).astype(a.dtype, copy=False)


def squash_grad(a) -> np.ndarray:
    """The derivative ``f'(a) = A S (1 - tanh(S a)^2)`` of :func:`squash`, elementwise, any shape."""
    (a,) = _float_arrays(a)
    t = np.tanh(S * a)
    return (A * S * (1.0 - t * t)).astype(a.dtype, copy=False)


# --------------------------------------------------------------------------------------------
# The Euclidean RBF output
# --------------------------------------------------------------------------------------------

def rbf(x, prototypes) -> np.ndarray:
    """Euclidean RBF units: ``y[n, i] = sum over j of (x[n, j] - prototypes[i, j]) ** 2``.

    x ``(N, D)`` (F6's states, D = 84), prototypes ``(K, D)`` (K = 10 flattened bitmaps) ->
    ``(N, K)`` squared distances: the smallest one names the class.
    """
    x, prototypes = _float_arrays(x, prototypes)
    if x.ndim != 2:
        raise ValueError(f"x must be a batch of vectors (N, D), got shape {x.shape}")
    if prototypes.ndim != 2 or prototypes.shape[1] != x.shape[1]:
        raise ValueError(f"prototypes must be (K, {x.shape[1]}) to match x of shape {x.shape}, "
                         f"got {prototypes.shape}")
    return ((x[:, None, :] - prototypes[None, :, :]) ** 2).sum(axis=2)


# The output units' fixed targets, drawn as 7x12 bitmaps: '#' is ink (+1), '.' is paper (-1).
_DIGIT_ART = """
..###.. ...#... ..###.. .#####. ....##. ####### ..###.. ####### ..###.. ..###..
.#...#. ..##... .#...#. #.....# ...#.#. #...... .#..... ......# .#...#. .#...#.
#.....# .#.#... #.....# ......# ..#..#. #...... #...... .....#. #.....# #.....#
#.....# ...#... ......# ......# .#...#. #...... #...... .....#. #.....# #.....#
#.....# ...#... .....#. .....#. #....#. #####.. #.###.. ....#.. .#...#. #.....#
#.....# ...#... ....#.. ..###.. #....#. .....#. ##...#. ....#.. ..###.. .#...##
#.....# ...#... ...#... .....#. ####### ......# #.....# ...#... .#...#. ..###.#
#.....# ...#... ..#.... ......# .....#. ......# #.....# ...#... #.....# ......#
#.....# ...#... .#..... ......# .....#. ......# #.....# ..#.... #.....# ......#
#.....# ...#... #...... ......# .....#. ......# #.....# ..#.... #.....# ......#
.#...#. ...#... #...... #.....# .....#. #....#. .#...#. ..#.... .#...#. .....#.
..###.. .#####. ####### .#####. .....#. .####.. ..###.. ..#.... ..###.. ..###..
"""


def rbf_prototypes() -> np.ndarray:
    """The 10 fixed bitmaps of the RBF output units, float32 ``(10, 12, 7)`` of +1 (ink) / -1.

    Digit i's bitmap is the target F6 should produce for class i (flatten it to 84 values). They
    are drawn as ASCII art in this module's source; each call returns a new array.
    """
    rows = [line.split(" ") for line in _DIGIT_ART.strip().splitlines()]
    art = np.array([[list(glyph) for glyph in row] for row in rows])  # (12, 10, 7) characters
    return np.where(art == "#", 1.0, -1.0).astype(np.float32).transpose(1, 0, 2)


# --------------------------------------------------------------------------------------------
# The same as torch modules
# --------------------------------------------------------------------------------------------

class ScaledTanh(nn.Module):
    """The squashing function ``f(a) = 1.7159 tanh(2a/3)`` as a module; any shape in and out."""

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return A * torch.tanh(S * a)

    def extra_repr(self) -> str:
        return f"A={A}, S=2/3"


class Subsampling(nn.Module):
    """S2/S4: each 2x2 block summed, times a trainable coefficient, plus a trainable bias.

    One coefficient and one bias per map (``2 * channels`` parameters); the squashing function
    comes after, outside this module. Input ``(N, channels, H, W)`` -> ``(N, channels, H // 2,
    W // 2)``. Starts as plain average pooling (coefficient 1/4, bias 0).
    """

    kernel_size = 2

    def __init__(self, channels: int):
        super().__init__()
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive int, got {channels!r}")
        self.channels = channels
        self.coef = nn.Parameter(torch.full((channels,), 1.0 / self.kernel_size ** 2))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels or min(x.shape[2:]) < self.kernel_size:
            raise ValueError(f"Subsampling({self.channels}) expects (N, {self.channels}, H, W) with "
                             f"H, W >= 2, got {tuple(x.shape)}")
        block_sums = F.avg_pool2d(x, self.kernel_size) * self.kernel_size ** 2
        return self.coef[:, None, None] * block_sums + self.bias[:, None, None]

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel_size={self.kernel_size}"


class SparseConv2d(nn.Conv2d):
    """A convolution in which output map k reads only the input maps listed in ``table[k]``.

    The weight keeps the full shape ``(out_channels, in_channels, kh, kw)``; ``forward``
    multiplies it by the fixed buffer ``mask`` ``(out_channels, in_channels)``, so unconnected
    slices never affect the output and always get zero gradient (they are kept at 0). Count the
    trainable parameters with :meth:`n_trainable`, not ``weight.numel()``: with the paper's
    ``table=C3_TABLE`` that is 60 * 25 + 16 = 1,516. Input ``(N, in_channels, H, W)`` ->
    ``(N, out_channels, H - kh + 1, W - kw + 1)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 table: Sequence[Sequence[int]]):
        mask = c3_mask(table, in_channels)
        if mask.shape[0] != out_channels:
            raise ValueError(f"table must list the inputs of each of the {out_channels} output maps, "
                             f"got {mask.shape[0]} entries")
        super().__init__(in_channels, out_channels, kernel_size)
        self.register_buffer("mask", torch.as_tensor(mask, dtype=self.weight.dtype))
        with torch.no_grad():
            self.weight.mul_(self.mask[:, :, None, None])

    @property
    def connected_weights(self) -> int:
        """The number of weights in use: connected (output, input) pairs times the kernel area."""
        return int(self.mask.sum().item()) * self.weight[0, 0].numel()

    def n_trainable(self) -> int:
        """Trainable parameters: connected weights plus biases (frozen tensors count 0)."""
        weights = self.connected_weights if self.weight.requires_grad else 0
        biases = self.bias.numel() if self.bias is not None and self.bias.requires_grad else 0
        return weights + biases

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"SparseConv2d expects (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        return F.conv2d(x, self.weight * self.mask[:, :, None, None], self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, links={int(self.mask.sum().item())}"


class RBFOutput(nn.Module):
    """Euclidean RBF output units with fixed prototypes: ``y_i = sum_j (x_j - w_ij) ** 2``.

    ``prototypes`` ``(K, D)`` (array or tensor) is copied into a registered buffer: saved with
    the model, moved by ``.to()``, never trained. Input ``(N, D)`` -> ``(N, K)`` squared
    distances; smaller is better.
    """

    def __init__(self, prototypes):
        super().__init__()
        prototypes = torch.as_tensor(prototypes, dtype=torch.get_default_dtype())
        if prototypes.dim() != 2:
            raise ValueError(f"prototypes must be (K, D), one flattened bitmap per class, "
                             f"got shape {tuple(prototypes.shape)}")
        self.register_buffer("prototypes", prototypes.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dim = self.prototypes.shape[1]
        if x.dim() != 2 or x.shape[1] != dim:
            raise ValueError(f"RBFOutput expects (N, {dim}), got {tuple(x.shape)}")
        return ((x[:, None, :] - self.prototypes[None, :, :]) ** 2).sum(dim=2)

    def extra_repr(self) -> str:
        n_classes, dim = self.prototypes.shape
        return f"{dim} -> {n_classes}, fixed prototypes"
