"""Checks for the exercises of lesson 00 (the data): solutions/00_data.ipynb.

00.1 parse an IDX header, 00.2 pad and scale a digit the paper's way, 00.3 count the digits of
each class, 00.4 measure the mean and spread of the scaled training images. The references are
:mod:`lenet_course.data` (``pad_to_32``, ``paper_scale``), numpy, and, for the IDX headers, the
known shapes the sample files are built from (tests/test_checks.py reads the same bytes back
with :func:`lenet_course.data.read_idx`).
"""
from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from lenet_course.checks import (
    call, compare_function, expect_array, expect_close, expect_equal, expect_raises, exercise,
)
from lenet_course.data import IDX_TYPES, pad_to_32, paper_scale

__all__ = ["IDX_SAMPLES", "SHORT_HEADERS", "idx_bytes"]



def idx_bytes(type_code: int, dims: tuple[int, ...]) -> bytes:
    """A complete IDX file (header, then zero-filled data) of the given type code and shape."""
    header = bytes([0, 0, type_code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
    return header + bytes(int(np.prod(dims)) * IDX_TYPES[type_code].itemsize)


# (description shown to the learner, type code, dims): the magic number is type_code * 256 + len(dims).
IDX_SAMPLES: tuple[tuple[str, int, tuple[int, ...]], ...] = (
    ("a labels file of 3 digits", 0x08, (3,)),
    ("an images file of 2 digits", 0x08, (2, 28, 28)),
    ("a labels file of 60,000 digits", 0x08, (60000,)),
    ("a 4-D file of 2x3x4x5 bytes", 0x08, (2, 3, 4, 5)),
    ("a file of 3 float32 values", 0x0D, (3,)),
)

# Inputs too short for the header they start: the learner's parser must raise ValueError.
SHORT_HEADERS: tuple[tuple[str, bytes], ...] = (
    ("no bytes at all", b""),
    ("3 bytes", bytes([0, 0, 0x08])),
    ("a 3-D header cut after 8 bytes", idx_bytes(0x08, (2, 28, 28))[:8]),
)


@exercise("00.1", "Parse an IDX header", names=("parse_idx_header",),
          hint='IDX numbers are big-endian 32-bit integers: int.from_bytes(data[i:i + 4], "big"). '
               "The magic number's last byte is the number of dimensions, which follow it 4 bytes "
               "each; compare len(data) with the header's length before reading.")
def _parse_idx_header(parse_idx_header: Any) -> None:
    for description, type_code, dims in IDX_SAMPLES:
        got = call(parse_idx_header, "parse_idx_header", (idx_bytes(type_code, dims),), description)
        expect_equal(got, (type_code * 256 + len(dims), dims), f"parse_idx_header({description})")
    for description, data in SHORT_HEADERS:
        expect_raises(parse_idx_header, "parse_idx_header", (data,), description, ValueError)


def _digits() -> list[tuple[str, tuple[np.ndarray]]]:
    edges = np.zeros((28, 28), np.uint8)
    edges[0, :] = edges[:, -1] = 255
    noise = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    return [("a blank digit", (np.zeros((28, 28), np.uint8),)),
            ("an all-ink digit", (np.full((28, 28), 255, np.uint8),)),
            ("a digit with ink on its top row and right column", (edges,)),
            ("a digit of random pixels", (noise,))]


@exercise("00.2", "Pad and scale a digit the paper's way", names=("pad_and_scale",),
          hint="Add 2 background pixels on every side (np.pad), and map 0..255 linearly onto "
               "-0.1..1.175 (BACKGROUND..FOREGROUND) as float32: the border must end up at -0.1.")
def _pad_and_scale(pad_and_scale: Any) -> None:
    compare_function(pad_and_scale, "pad_and_scale", lambda digit: paper_scale(pad_to_32(digit)),
                     _digits(), expect_array)


def _labels() -> list[tuple[str, tuple[np.ndarray]]]:
    return [("the labels 0 to 9 once each", (np.arange(10, dtype=np.uint8),)),
            ("labels without any 7", (np.array([0, 1, 1, 2, 3, 3, 3, 4, 5, 6, 8, 9, 9], np.uint8),)),
            ("labels that stop at 4", (np.array([0, 1, 2, 3, 4, 4], np.uint8),)),
            ("an empty array of labels", (np.array([], np.uint8),)),
            ("4,000 random labels", (np.random.default_rng(0).integers(0, 10, 4000).astype(np.uint8),))]


@exercise("00.3", "Count the digits of each class", names=("count_classes",),
          hint="Return 10 integer counts, for the digits 0 to 9 in order: a digit that never "
               "occurs still gets its 0, and empty labels give ten zeros (np.bincount has an "
               "argument for that).")
def _count_classes(count_classes: Any) -> None:
    compare_function(count_classes, "count_classes", lambda labels: np.bincount(labels, minlength=10),
                     _labels(), partial(expect_array, same_kind=True))


@exercise("00.4", "Measure the mean and spread of the scaled inputs",
          names=("data", "scaled_mean", "scaled_std"),
          hint="Pad first, then scale (pad_to_32 and paper_scale take the whole (N, 28, 28) array at "
               "once); take the mean and the standard deviation over every pixel of every training "
               "image of data.")
def _scaled_stats(data: Any, scaled_mean: Any, scaled_std: Any) -> None:
    scaled = paper_scale(pad_to_32(data.train_images))
    expect_close(scaled_mean, float(scaled.mean(dtype=np.float64)), "scaled_mean")
    expect_close(scaled_std, float(scaled.std(dtype=np.float64)), "scaled_std")
