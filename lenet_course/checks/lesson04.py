"""Checks for the exercises of lesson 04 (S4, C5, F6 and the squashing function): solutions/04_trunk.ipynb.

04.1 the scaled tanh and its derivative, 04.2 the shape of C5's output for an input of any size
(C5 is a convolution), 04.3 the trainable parameters of the trunk, layer by layer. The
references are :func:`lenet_course.layers.squash` / :func:`~lenet_course.layers.squash_grad`,
and the arithmetic in :func:`c5_output_shape` and :func:`trunk_parameter_counts`, which
tests/test_lessons_03_04.py pins to the model's layers and to :data:`lenet_course.paper.LAYERS`.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Sequence

import numpy as np

from lenet_course.checks import (
    CheckFailed, call, compare_function, describe, expect_array, expect_equal, expect_int, expect_raises,
    exercise, is_int,
)
from lenet_course.layers import squash, squash_grad
from lenet_course.paper import C3_TABLE

__all__ = ["squash_cases", "c5_output_shape", "SHAPE_CASES", "TOO_SMALL", "trunk_parameter_counts",
           "TRUNK_CASES", "TRUNK_LAYERS"]


def squash_cases() -> list[tuple[str, tuple]]:
    """(description, (a,)) for 04.1: float64 arrays of several shapes, large values included."""
    rng = np.random.default_rng(4)
    return [
        ("a = [-1, 0, 1]", (np.array([-1.0, 0.0, 1.0]),)),
        ("a from -4 to 4 in 17 steps", (np.linspace(-4.0, 4.0, 17),)),
        ("a (2, 3) array of random values", (rng.normal(scale=3.0, size=(2, 3)),)),
        ("a = [-2000, -40, 40, 2000], far in the flat tails", (np.array([-2000.0, -40.0, 40.0, 2000.0]),)),
    ]


@exercise("04.1", "The scaled tanh and its derivative", names=("scaled_tanh", "scaled_tanh_grad"),
          hint="f(a) = A tanh(S a), with A = 1.7159 and S = 2/3 imported for you. For f', the chain rule and "
               "tanh'(u) = 1 - tanh(u)^2 are all you need. Apply np.tanh to the whole array at once: unlike a "
               "formula written with np.exp, it does not overflow for large a.")
def _scaled_tanh(scaled_tanh: Any, scaled_tanh_grad: Any) -> None:
    compare = partial(expect_array, same_kind=True, atol=1e-6)
    compare_function(scaled_tanh, "scaled_tanh", squash, squash_cases(), compare)
    compare_function(scaled_tanh_grad, "scaled_tanh_grad", squash_grad, squash_cases(), compare)


def c5_output_shape(height: int, width: int) -> tuple[int, int, int]:
    """C5's output ``(120, h, w)`` for an input image of ``height`` x ``width`` pixels.

    C1, C3 and C5 are valid 5x5 convolutions (size - 4); S2 and S4 halve the size, dropping an
    odd last row or column. ValueError when a layer gets less than it needs (5 for a
    convolution, 2 for a subsampling).
    """
    size = [height, width]
    for layer, kind in (("C1", "conv"), ("S2", "pool"), ("C3", "conv"), ("S4", "pool"), ("C5", "conv")):
        need = 5 if kind == "conv" else 2
        if min(size) < need:
            raise ValueError(f"{layer} needs maps of at least {need}x{need}, got {size[0]}x{size[1]} "
                             f"(input {height}x{width})")
        size = [s - 4 for s in size] if kind == "conv" else [s // 2 for s in size]
    return (120, size[0], size[1])


# (description, (height, width))
SHAPE_CASES: tuple[tuple[str, tuple[int, int]], ...] = (
    ("a 32x32 input, the paper's", (32, 32)),
    ("a 40x40 input", (40, 40)),
    ("a 36x36 input", (36, 36)),
    ("a 33x33 input (odd sizes: subsampling drops the last row and column)", (33, 33)),
    ("a 32x64 input, twice as wide", (32, 64)),
    ("a 64x32 input, twice as tall", (64, 32)),
)

# Inputs too small for the trunk: the learner's function must raise ValueError.
TOO_SMALL: tuple[tuple[str, tuple[int, int]], ...] = (
    ("a 28x28 input (an unpadded digit)", (28, 28)),
    ("a 32x31 input (one column short)", (32, 31)),
    ("a 4x4 input", (4, 4)),
)


@exercise("04.2", "C5 is a convolution: its output for any input size", names=("c5_shape",),
          hint="Follow the size through the trunk: each 5x5 convolution (C1, C3, C5) takes 4 rows and 4 "
               "columns off, each subsampling (S2, S4) halves them, rounding down. Check before each layer "
               "that it gets at least 5 (convolution) or 2 (subsampling) rows and columns, else raise "
               "ValueError. Return a tuple of three ints.")
def _c5_shape(c5_shape: Any) -> None:
    for description, args in SHAPE_CASES:
        got = call(c5_shape, "c5_shape", args, description)
        expr = f"c5_shape({description})"
        if isinstance(got, tuple) and len(got) == 3 and not all(map(is_int, got)):
            raise CheckFailed(f"{expr} should be a tuple of three ints, got {describe(got)}")
        expect_equal(got, c5_output_shape(*args), expr)
    for description, args in TOO_SMALL:
        expect_raises(c5_shape, "c5_shape", args, description, ValueError)


TRUNK_LAYERS = ("C1", "S2", "C3", "S4", "C5", "F6")


def trunk_parameter_counts(c1_maps: int, c3_table: Sequence[Sequence[int]], c5_maps: int,
                           f6_units: int) -> dict[str, int]:
    """Trainable parameters of each trunk layer of a LeNet-5 with 5x5 kernels, 2x2 subsampling.

    C1 reads the one input image; C3's maps are wired to C1's (through S2) by ``c3_table``;
    C5 reads every S4 map; F6 reads every C5 map. Subsampling layers have a coefficient and a
    bias per map.
    """
    c3_maps, k = len(c3_table), 5 * 5
    return {
        "C1": c1_maps * (k + 1),
        "S2": 2 * c1_maps,
        "C3": sum(len(inputs) for inputs in c3_table) * k + c3_maps,
        "S4": 2 * c3_maps,
        "C5": c5_maps * (c3_maps * k + 1),
        "F6": f6_units * (c5_maps + 1),
    }


# (description, (c1_maps, c3_table, c5_maps, f6_units))
TRUNK_CASES: tuple[tuple[str, tuple], ...] = (
    ("the paper's trunk: 6, Table I, 120, 84", (6, C3_TABLE, 120, 84)),
    ("a full C3: 6, 16 maps each reading all 6, 120, 84", (6, (tuple(range(6)),) * 16, 120, 84)),
    ("a small trunk: 4, ((0, 1), (2, 3), (0, 1, 2, 3)), 50, 20", (4, ((0, 1), (2, 3), (0, 1, 2, 3)), 50, 20)),
    ("the smallest trunk: 1, ((0,),), 1, 1", (1, ((0,),), 1, 1)),
)


@exercise("04.3", "Count the parameters of the trunk, layer by layer", names=("trunk_parameters",),
          hint="Every kernel is 5x5. A convolution has one kernel per (output map, input map) pair it "
               "connects plus one bias per output map; a subsampling layer has one coefficient and one bias "
               "per map; a fully connected layer has one weight per (unit, input) pair plus one bias per "
               "unit. C3's input maps are C1's (through S2); C5 reads all of C3's (through S4).")
def _trunk_parameters(trunk_parameters: Any) -> None:
    for description, args in TRUNK_CASES:
        want = trunk_parameter_counts(*args)
        got = call(trunk_parameters, "trunk_parameters", args, description)
        expr = f"trunk_parameters({description})"
        if not isinstance(got, dict):
            raise CheckFailed(f"{expr} should return a dict from layer name to count, got {describe(got)}")
        if set(got) != set(want):
            raise CheckFailed(f"{expr} should have the keys {', '.join(TRUNK_LAYERS)}, got "
                              f"{', '.join(map(repr, got)) or 'none'}")
        for layer in TRUNK_LAYERS:
            value = got[layer]
            expect_int(value, f"{expr}[{layer!r}]")
            if int(value) != want[layer]:
                raise CheckFailed(f"{expr}[{layer!r}] should be {want[layer]:,}, got {int(value):,}")
