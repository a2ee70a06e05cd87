"""Checks for the exercises of lesson 02 (subsampling S2): solutions/02_subsampling.ipynb.

02.1 the paper's trainable subsampling followed by the squashing function, 02.2 the output size,
parameters and connections of a subsampling layer, 02.3 average and max pooling, 02.4 shifting
digits without wrapping around (the tool of the shift-tolerance measurement). The references are
:func:`lenet_course.layers.subsample` and :func:`lenet_course.layers.squash`,
``torch.nn.functional.avg_pool2d`` / ``max_pool2d``, and the paper's way of counting.
"""
from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from lenet_course.checks import call, compare_function, expect_array, expect_fields, expect_raises, exercise
from lenet_course.layers import squash, subsample

__all__ = ["SMALL_MAP", "S2_CASES", "COUNT_CASES", "POOL_CASES", "SHIFT_CASES",
           "subsampling_counts_reference", "pool_reference", "shift_reference"]


# The small map of the lesson, as a batch of one image with one map.
SMALL_MAP = np.array([[1.0, 0.0, -1.0, -1.0],
                      [0.0, 0.0, -1.0, 0.5],
                      [1.5, 1.5, 0.0, 0.0],
                      [1.5, 1.5, 0.0, 2.0]], np.float32)[None, None]


def _c1_like(n: int, maps: int, size: int, seed: int) -> np.ndarray:
    """Squashed C1-like states: values in (-1.7159, 1.7159)."""
    return squash(np.random.default_rng(seed).normal(0, 1.5, (n, maps, size, size))).astype(np.float32)


# (description, (x (N, C, H, W), coef (C,), bias (C,))) for s2_forward
S2_CASES: tuple[tuple[str, tuple], ...] = (
    ("the lesson's 4x4 map, coef 1, bias 0", (SMALL_MAP, np.array([1.0]), np.array([0.0]))),
    ("the lesson's 4x4 map, coef 0.25, bias -0.5", (SMALL_MAP, np.array([0.25]), np.array([-0.5]))),
    ("2 images of 6 C1-like maps 28x28, a different coef and bias per map",
     (_c1_like(2, 6, 28, 1), np.array([0.1, 0.25, 0.5, 1.0, 2.0, -0.5]),
      np.array([0.0, 0.5, -0.5, 1.0, -1.0, 0.2]))),
    ("a 5x7 map (odd sizes: the last row and column have no partner and are dropped)",
     (np.random.default_rng(2).normal(size=(1, 1, 5, 7)).astype(np.float32), np.array([0.5]), np.array([0.1]))),
    ("1 image of 3 maps with negative coefficients",
     (_c1_like(1, 3, 6, 3), np.array([-1.0, -0.25, -2.0]), np.array([0.0, 1.0, -1.0]))),
)


def _s2_reference(x, coef, bias) -> np.ndarray:
    return squash(subsample(x, coef, bias))


@exercise("02.1", "Subsample the paper's way: sum, coefficient, bias, squash", names=("s2_forward",),
          hint="Sum each non-overlapping 2x2 block of each map (drop an odd last row or column), "
               "multiply map c's sums by coef[c], add bias[c], then apply squash. Reshaping (H, W) "
               "to (H // 2, 2, W // 2, 2) puts each block on two axes of its own.")
def _s2_forward(s2_forward: Any) -> None:
    compare_function(s2_forward, "s2_forward", _s2_reference, S2_CASES,
                     partial(expect_array, same_kind=True, atol=1e-5))


def subsampling_counts_reference(maps: int, input_size: int) -> tuple[int, int, int]:
    """(output size, trainable parameters, connections) of a 2x2 trainable subsampling layer."""
    if input_size < 2:
        raise ValueError(f"a {input_size}x{input_size} map has no 2x2 block")
    out = input_size // 2
    return out, 2 * maps, maps * out * out * (4 + 1)


# (description, (maps, input_size))
COUNT_CASES: tuple[tuple[str, tuple], ...] = (
    ("S2: 6 maps of 28x28", (6, 28)),
    ("S4: 16 maps of 10x10", (16, 10)),
    ("6 maps of 7x7 (odd: the last row and column are dropped)", (6, 7)),
    ("1 map of 2x2", (1, 2)),
)


@exercise("02.2", "Size, parameters and connections of a subsampling layer", names=("subsampling_counts",),
          hint="Each map has one trainable coefficient and one bias; each output unit reads a 2x2 block "
               "(4 inputs) plus its bias, so it has 5 connections; a map of input_size x input_size "
               "gives (input_size // 2)^2 units. Return three ints.")
def _subsampling_counts(subsampling_counts: Any) -> None:
    for description, args in COUNT_CASES:
        got = call(subsampling_counts, "subsampling_counts", args, description)
        expect_fields(got, subsampling_counts_reference(*args), ("output size", "parameters", "connections"),
                      f"subsampling_counts({description})")
    expect_raises(subsampling_counts, "subsampling_counts", (6, 1), "6 maps of 1x1", ValueError)


def pool_reference(x, kind: str) -> np.ndarray:
    """2x2 average or max pooling with torch, numpy in and out (float32)."""
    import torch
    import torch.nn.functional as F
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    pooled = F.avg_pool2d(t, 2) if kind == "avg" else F.max_pool2d(t, 2)
    return pooled.numpy()


# (description, x) for pool2x2; every case is checked with kind "avg" and "max"
POOL_CASES: tuple[tuple[str, np.ndarray], ...] = (
    ("the lesson's 4x4 map", SMALL_MAP),
    ("a 4x4 map of negative values only", -1.0 - np.abs(np.random.default_rng(4).normal(size=(1, 1, 4, 4))).astype(np.float32)),
    ("2 images of 3 maps 5x5 (odd: the last row and column are dropped)",
     np.random.default_rng(5).normal(size=(2, 3, 5, 5)).astype(np.float32)),
    ("4 images of 6 C1-like maps 28x28", _c1_like(4, 6, 28, 6)),
)


@exercise("02.3", "Average and max pooling", names=("pool2x2",),
          hint='For each non-overlapping 2x2 block (an odd last row or column is dropped) return its '
               'mean when kind == "avg" and its largest value (not the largest absolute value) when '
               'kind == "max"; raise ValueError for any other kind.')
def _pool2x2(pool2x2: Any) -> None:
    cases = [(f"{description}, {kind!r}", (x, kind)) for description, x in POOL_CASES for kind in ("avg", "max")]
    compare_function(pool2x2, "pool2x2", pool_reference, cases, partial(expect_array, same_kind=True, atol=1e-6))
    expect_raises(pool2x2, "pool2x2", (SMALL_MAP, "sum"), "the lesson's 4x4 map, 'sum'", ValueError)


def shift_reference(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``images`` (..., H, W) moved ``dy`` rows down and ``dx`` columns right, 0 where nothing moved in."""
    height, width = images.shape[-2:]
    out = np.zeros_like(images)
    if abs(dy) >= height or abs(dx) >= width:
        return out
    rows_to, rows_from = slice(max(dy, 0), height + min(dy, 0)), slice(max(-dy, 0), height - max(dy, 0))
    cols_to, cols_from = slice(max(dx, 0), width + min(dx, 0)), slice(max(-dx, 0), width - max(dx, 0))
    out[..., rows_to, cols_to] = images[..., rows_from, cols_from]
    return out


def _shift_digits() -> np.ndarray:
    """Three 28x28 uint8 'digits' with ink touching different borders, so wrapping shows."""
    g = np.random.default_rng(7)
    digits = np.zeros((3, 28, 28), np.uint8)
    digits[0, 4:24, 10:14] = 255                        # a centred vertical bar
    digits[1, 0:3, :] = 200                             # ink on the top rows
    digits[1, :, 25:] = 100                             # ... and on the right columns
    digits[2] = g.integers(0, 256, (28, 28), dtype=np.uint8)  # noise everywhere
    return digits


# (description, (images, dy, dx))
SHIFT_CASES: tuple[tuple[str, tuple], ...] = (
    ("3 digits, dy=0, dx=0 (no shift)", (_shift_digits(), 0, 0)),
    ("3 digits, dy=1, dx=0 (one row down)", (_shift_digits(), 1, 0)),
    ("3 digits, dy=0, dx=-2 (two columns left)", (_shift_digits(), 0, -2)),
    ("3 digits, dy=2, dx=3", (_shift_digits(), 2, 3)),
    ("3 digits, dy=-1, dx=-1 (up and left)", (_shift_digits(), -1, -1)),
    ("3 digits, dy=0, dx=30 (further than the width: nothing is left)", (_shift_digits(), 0, 30)),
)


@exercise("02.4", "Shift digits without wrapping around", names=("shift_digits",),
          hint="Start from np.zeros_like(images) (background, same dtype) and copy into it the part "
               "of the images that stays inside the frame, choosing the row and column slices from the "
               "signs of dy and dx; a shift as large as the image leaves only background. np.roll is "
               "not a shift: it wraps the ink that leaves one side around to the other.")
def _shift(shift_digits: Any) -> None:
    compare_function(shift_digits, "shift_digits", shift_reference, SHIFT_CASES, expect_array)
