"""Checks for the exercises of lesson 03 (C3 and its connection table): solutions/03_c3_table.ipynb.

03.1 build the 0/1 connection mask of a table, 03.2 a masked convolution, 03.3 count the
parameters and connections of a convolution whose maps are wired by a table. The references
are :func:`lenet_course.layers.c3_mask`, :func:`lenet_course.layers.sparse_conv2d` and the
arithmetic in :func:`table_conv_counts`, which tests/test_lessons_03_04.py pins to the paper's
numbers (:mod:`lenet_course.paper`) and to the model's own layer table.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Sequence

import numpy as np

from lenet_course.checks import (
    CheckFailed, call, compare_function, expect_array, expect_int, expect_raises, expect_tuple, exercise,
)
from lenet_course.layers import c3_mask, sparse_conv2d
from lenet_course.paper import C3_TABLE

__all__ = ["MASK_TABLES", "BAD_TABLES", "conv_cases", "COUNT_CASES", "table_conv_counts"]

FULL_C3 = tuple(tuple(range(6)) for _ in range(16))  # every S2 map feeds every C3 map

# (description shown to the learner, table, number of input maps)
MASK_TABLES: tuple[tuple[str, tuple, int], ...] = (
    ("Table I, 16 maps reading from 6", C3_TABLE, 6),
    ("3 maps reading from 4: (0,), (1, 3), (0, 1, 2, 3)", ((0,), (1, 3), (0, 1, 2, 3)), 4),
    ("2 maps that list their inputs out of order: (2, 0), (1,)", ((2, 0), (1,)), 3),
    ("2 maps reading from 5, where input map 4 feeds nothing: (0, 1), (2, 3)", ((0, 1), (2, 3)), 5),
    ("one map reading the only input map: (0,)", ((0,),), 1),
    ("4 maps each reading all 3 input maps", ((0, 1, 2),) * 4, 3),
)

# Tables naming an input map that does not exist: the learner's function must raise ValueError.
BAD_TABLES: tuple[tuple[str, tuple, int], ...] = (
    ("a table naming input map 6 when the maps are 0 to 5: (0, 6)", ((0, 6),), 6),
    ("a table naming input map -1: (-1,)", ((-1,),), 6),
)


@exercise("03.1", "Build the connection mask of a table", names=("connection_mask",),
          hint="Start from np.zeros((len(table), n_inputs)) and set mask[k, c] = 1 for every input map c "
               "listed in table[k]. Input maps are numbered 0 to n_inputs - 1: raise ValueError for any "
               "other number (a negative index would silently mark the last column).")
def _connection_mask(connection_mask: Any) -> None:
    cases = [(description, (table, n_inputs)) for description, table, n_inputs in MASK_TABLES]
    compare_function(connection_mask, "connection_mask", c3_mask, cases,
                     partial(expect_array, same_kind=True))
    for description, table, n_inputs in BAD_TABLES:
        expect_raises(connection_mask, "connection_mask", (table, n_inputs), description, ValueError)


def conv_cases() -> list[tuple[str, tuple]]:
    """(description, (x, w, b, mask)) for 03.2; the weights of unconnected pairs are not zero."""
    rng = np.random.default_rng(3)
    small_mask = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    return [
        ("one 6-map 14x14 input through Table I's mask",
         (rng.normal(size=(1, 6, 14, 14)), rng.normal(size=(16, 6, 5, 5)), rng.normal(size=16), c3_mask())),
        ("a batch of 2, 3 maps in, 2 maps out, 3x3 kernels, mask [[1, 0, 1], [0, 1, 0]]",
         (rng.normal(size=(2, 3, 6, 6)), rng.normal(size=(2, 3, 3, 3)), rng.normal(size=2), small_mask)),
        ("an all-zero mask: only the biases remain",
         (rng.normal(size=(2, 3, 6, 6)), rng.normal(size=(2, 3, 3, 3)), rng.normal(size=2), np.zeros((2, 3)))),
        ("an all-ones mask: an ordinary convolution",
         (rng.normal(size=(2, 3, 6, 7)), rng.normal(size=(4, 3, 3, 2)), rng.normal(size=4), np.ones((4, 3)))),
    ]


@exercise("03.2", "A masked convolution", names=("masked_conv2d",),
          hint="Output map k may only read the input maps c with mask[k, c] == 1: zero the kernel slices "
               "w[k, c] of the other pairs (broadcast the (K, C) mask over the kernel's two last axes), "
               "then convolve as usual with conv2d; do not change w in place.")
def _masked_conv2d(masked_conv2d: Any) -> None:
    compare_function(masked_conv2d, "masked_conv2d", sparse_conv2d, conv_cases(),
                     partial(expect_array, same_kind=True, atol=1e-4))


def table_conv_counts(table: Sequence[Sequence[int]], kernel_size: int, output_size: int) -> tuple[int, int]:
    """(trainable parameters, connections) of a convolution wired by ``table``: one kernel_size x
    kernel_size kernel per connected pair and one bias per output map, all used at each of the
    output_size x output_size positions."""
    links = sum(len(inputs) for inputs in table)
    params = links * kernel_size ** 2 + len(table)
    return params, params * output_size ** 2


# (description, (table, kernel_size, output_size))
COUNT_CASES: tuple[tuple[str, tuple], ...] = (
    ("Table I, 5x5 kernels, 10x10 maps", (C3_TABLE, 5, 10)),
    ("a full C3: 16 maps each reading all 6 S2 maps, 5x5 kernels, 10x10 maps", (FULL_C3, 5, 10)),
    ("C1 as a table: 6 maps each reading the one input image, 5x5 kernels, 28x28 maps", (((0,),) * 6, 5, 28)),
    ("C5 as a table: 120 maps each reading all 16 S4 maps, 5x5 kernels, 1x1 maps",
     ((tuple(range(16)),) * 120, 5, 1)),
    ("2 maps reading (0,) and (0, 1), 3x3 kernels, 4x4 maps", (((0,), (0, 1)), 3, 4)),
)


@exercise("03.3", "Count the parameters and connections of a table", names=("table_counts",),
          hint="Count the connected (output, input) pairs of the table: each has one kernel of "
               "kernel_size x kernel_size weights, and each output map adds one bias. The same parameters "
               "are used again at every one of the output_size x output_size positions, and each use is "
               "one connection. Return two ints.")
def _table_counts(table_counts: Any) -> None:
    fields = ("parameters", "connections")
    for description, args in COUNT_CASES:
        want = table_conv_counts(*args)
        got = call(table_counts, "table_counts", args, description)
        expr = f"table_counts({description})"
        expect_tuple(got, fields, expr, lists=True)
        for field, value in zip(fields, got):
            expect_int(value, f"{expr}: {field}")
        if tuple(int(v) for v in got) != want:
            raise CheckFailed(f"{expr} should be ({want[0]:,} parameters, {want[1]:,} connections), "
                              f"got ({int(got[0]):,}, {int(got[1]):,})")
