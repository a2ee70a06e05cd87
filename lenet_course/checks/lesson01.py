"""Checks for the exercises of lesson 01 (convolution and C1): solutions/01_convolution.ipynb.

01.1 one output map with loops (several input maps, one kernel), 01.2 a batch of maps and a bank of
kernels, vectorized, 01.3 the parameters and connections of a convolution layer. The references
are :func:`lenet_course.layers.conv2d_loops` and :func:`lenet_course.layers.conv2d` (which the
tests check against ``torch.nn.functional.conv2d``) and the paper's way of counting (a bias is a
parameter of each map and one connection of each unit).
"""
from __future__ import annotations

import time
from functools import partial
from typing import Any

import numpy as np

from lenet_course.checks import (
    CheckFailed, call, compare_function, expect_array, expect_fields, expect_raises, exercise,
)
from lenet_course.layers import conv2d, conv2d_loops

__all__ = ["MAP_CASES", "BATCH_CASES", "COUNT_CASES", "SPEED_BATCH", "SPEED_LIMIT_S", "conv_counts_reference"]


def _digit_like(seed: int, size: int = 32) -> np.ndarray:
    """A 32x32 float32 input shaped like a scaled digit: background -0.1, a few bright strokes."""
    x = np.full((size, size), -0.1, np.float32)
    g = np.random.default_rng(seed)
    for _ in range(3):
        r, c = g.integers(4, size - 8, 2)
        x[r:r + 8, c:c + 2] = 1.175
        x[r + 3:r + 5, c:c + 7] = 1.175
    return x


def _ramp(shape: tuple[int, ...]) -> np.ndarray:
    return np.arange(np.prod(shape), dtype=np.float32).reshape(shape)


_ASYMMETRIC = np.array([[1.0, 2.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -3.0]], np.float32)

# (description shown to the learner, (x (C, H, W), w (C, kh, kw), b)) for conv_map
MAP_CASES: tuple[tuple[str, tuple], ...] = (
    ("a 5x5 ramp 0..24 and an asymmetric 3x3 kernel, bias 0.5",
     (_ramp((1, 5, 5)), _ASYMMETRIC[None], 0.5)),
    ("a 4x7 input and a 2x3 kernel (nothing square)",
     (np.random.default_rng(1).normal(size=(1, 4, 7)).astype(np.float32), np.random.default_rng(2).normal(size=(1, 2, 3)).astype(np.float32), -1.0)),
    ("3 input maps of 6x6 and a 3x3x3 kernel",
     (np.random.default_rng(3).normal(size=(3, 6, 6)).astype(np.float32), np.random.default_rng(4).normal(size=(3, 3, 3)).astype(np.float32), 0.25)),
    ("a 32x32 digit-like input and a 5x5 edge kernel (C1's sizes)",
     (_digit_like(5)[None], np.tile(np.array([-1, -1, 0, 1, 1], np.float32), (1, 5, 1)), 0.0)),
    ("a 5x5 kernel as large as its 5x5 input (one output value)",
     (np.random.default_rng(6).normal(size=(2, 5, 5)).astype(np.float32), np.random.default_rng(7).normal(size=(2, 5, 5)).astype(np.float32), 2.0)),
    ("a 1x1 kernel (every output is one weighted input)",
     (_ramp((1, 3, 4)), np.full((1, 1, 1), 2.0, np.float32), 1.0)),
)


def _conv_map_reference(x, w, b) -> np.ndarray:
    return conv2d_loops(np.asarray(x)[None], np.asarray(w)[None], np.array([b]))[0, 0]


@exercise("01.1", "Convolve one output map with loops", names=("conv_map",),
          hint="Loop over the output positions (i, j): the output is (H - kh + 1) x (W - kw + 1); the "
               "patch at (i, j) is x[:, i:i + kh, j:j + kw], all input maps at once; multiply it "
               "elementwise by w (do not flip the kernel), sum everything, add b.")
def _conv_map(conv_map: Any) -> None:
    compare_function(conv_map, "conv_map", _conv_map_reference, MAP_CASES,
                     partial(expect_array, same_kind=True, atol=1e-4))


# (description, (x (N, C, H, W), w (K, C, kh, kw), b (K,))) for conv_batch
BATCH_CASES: tuple[tuple[str, tuple], ...] = (
    ("1 image, 1 map, 1 kernel: a 5x5 ramp and an asymmetric 3x3 kernel",
     (_ramp((1, 1, 5, 5)), _ASYMMETRIC[None, None], np.array([0.5], np.float32))),
    ("8 digit-like images (8, 1, 32, 32) and C1's bank of 6 kernels (6, 1, 5, 5)",
     (np.stack([_digit_like(s)[None] for s in range(8)]),
      np.random.default_rng(8).uniform(-0.1, 0.1, (6, 1, 5, 5)).astype(np.float32),
      np.random.default_rng(9).uniform(-0.1, 0.1, 6).astype(np.float32))),
    ("2 images of 3 maps 7x9 and 4 kernels 3x2 (multi-channel, nothing square)",
     (np.random.default_rng(10).normal(size=(2, 3, 7, 9)).astype(np.float32), np.random.default_rng(11).normal(size=(4, 3, 3, 2)).astype(np.float32),
      np.random.default_rng(12).normal(size=4).astype(np.float32))),
    ("1 image of 16 maps 5x5 and 3 kernels 16x5x5 (C5's shape: 1x1 outputs)",
     (np.random.default_rng(13).normal(size=(1, 16, 5, 5)).astype(np.float32), np.random.default_rng(14).normal(size=(3, 16, 5, 5)).astype(np.float32),
      np.zeros(3, np.float32))),
)

SPEED_BATCH = 32       # digit-like images in the speed test, with C1's 6 kernels
SPEED_LIMIT_S = 0.25   # a vectorized version needs about 0.005 s; four nested loops about 0.6 s


def _speed_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.stack([_digit_like(100 + s)[None] for s in range(SPEED_BATCH)])
    return x, np.random.default_rng(15).uniform(-0.1, 0.1, (6, 1, 5, 5)).astype(np.float32), np.zeros(6, np.float32)


@exercise("01.2", "Convolve a batch of images, vectorized", names=("conv_batch",),
          hint="Either view every patch at once with numpy.lib.stride_tricks.sliding_window_view(x, "
               "(kh, kw), axis=(2, 3)), shape (N, C, H', W', kh, kw), and sum it against w with "
               "np.einsum; or loop over the kh*kw kernel offsets only, adding a shifted slice of x "
               "times a weight for all images, kernels and positions at once. Then add b[k] to map k.")
def _conv_batch(conv_batch: Any) -> None:
    compare_function(conv_batch, "conv_batch", conv2d, BATCH_CASES,
                     partial(expect_array, same_kind=True, atol=1e-4))
    args = _speed_case()
    description = f"{SPEED_BATCH} digits and 6 kernels"
    call(conv_batch, "conv_batch", args, description)  # warm-up (einsum plans, caches)
    start = time.perf_counter()
    got = call(conv_batch, "conv_batch", args, description)
    seconds = time.perf_counter() - start
    expect_array(got, conv2d(*args), f"conv_batch({description})", same_kind=True, atol=1e-4)
    if seconds > SPEED_LIMIT_S:
        raise CheckFailed(f"conv_batch({description}) gives the right numbers but took {seconds:.2f} s; "
                          f"a vectorized version takes about 0.01 s: no Python loop over images, kernels "
                          f"or output positions")


def conv_counts_reference(maps: int, kernel: int, input_size: int, in_maps: int = 1) -> tuple[int, int]:
    """(trainable parameters, connections) of a full convolution layer, the paper's way."""
    if kernel > input_size:
        raise ValueError(f"a {kernel}x{kernel} kernel does not fit in a {input_size}x{input_size} input")
    params = maps * (in_maps * kernel * kernel + 1)
    out = input_size - kernel + 1
    return params, out * out * params


# (description, (maps, kernel, input_size, in_maps))
COUNT_CASES: tuple[tuple[str, tuple], ...] = (
    ("C1: 6 maps, 5x5 kernels, a 32x32 input", (6, 5, 32, 1)),
    ("6 maps, 2x2 kernels, a 32x32 input", (6, 2, 32, 1)),
    ("1 map, a 3x3 kernel, a 10x10 input", (1, 3, 10, 1)),
    ("C3 fully connected: 16 maps, 5x5 kernels on 6 input maps of 14x14", (16, 5, 14, 6)),
    ("C5: 120 maps, 5x5 kernels on 16 input maps of 5x5", (120, 5, 5, 16)),
)


@exercise("01.3", "Count a convolution layer's parameters and connections", names=("conv_counts",),
          hint="Each map has one kernel of in_maps x kernel x kernel weights and one bias; each output "
               "unit is connected to the in_maps x kernel x kernel inputs of its receptive field plus "
               "its bias, and a map has (input_size - kernel + 1)^2 units. Return two ints.")
def _conv_counts(conv_counts: Any) -> None:
    for description, args in COUNT_CASES:
        got = call(conv_counts, "conv_counts", args, description)
        expect_fields(got, conv_counts_reference(*args), ("parameters", "connections"),
                      f"conv_counts({description})")
    expect_raises(conv_counts, "conv_counts", (6, 5, 4, 1), "a 5x5 kernel on a 4x4 input", ValueError)
