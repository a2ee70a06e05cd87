"""Checks for the exercises of lesson 10 (from images to video): solutions/10_video.ipynb.

10.1 pooling per-frame scores into a clip's prediction, 10.2 a clip's direction from its positions,
10.3 the output shape of a 3-D convolution, 10.4 frame differences. The references are the
package's :func:`lenet_course.video.temporal_pool` (10.1), the labels :func:`moving_digits` draws
(10.2), ``torch.nn.functional.conv3d`` on an empty clip (10.3) and slicing (10.4). Every case is
made here from small tensors or blank digits; no data is loaded.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lenet_course.checks import CheckFailed, call, describe, exercise, expect_int, expect_raises, expect_tensor
from lenet_course.video import Clips, moving_digits, temporal_pool

__all__ = ["prediction_cases", "position_cases", "shape_cases", "difference_cases"]


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _clips(n: int, seed: int, *, frames: int = 8, speed: int = 1, n_directions: int = 4, ink: bool = True) -> Clips:
    """``n`` clips of a made-up digit (a filled bar with a cross-stroke, or blank), seeded."""
    digits = np.zeros((n, 28, 28), np.uint8)
    if ink:
        digits[:, 6:22, 12:16] = 255
        digits[:, 8:11, 8:20] = 180
    return moving_digits(digits, np.arange(n) % 10, generator=np.random.default_rng(seed), frames=frames,
                         speed=speed, n_directions=n_directions)


# --------------------------------------------------------------------------------------------
# 10.1 temporal pooling into a prediction
# --------------------------------------------------------------------------------------------

def _reference_prediction(frame_scores: torch.Tensor, how: str) -> torch.Tensor:
    return temporal_pool(frame_scores, how).argmax(dim=1)


def _crafted(rows: list[list[dict[int, float]]], classes: int = 10) -> torch.Tensor:
    """Scores ``(N, T, classes)``: 0 everywhere except the values given per clip, frame and class."""
    scores = torch.zeros(len(rows), len(rows[0]), classes)
    for i, clip in enumerate(rows):
        for t, frame in enumerate(clip):
            for c, value in frame.items():
                scores[i, t, c] = value
    return scores


def prediction_cases() -> list[tuple[str, tuple]]:
    """(description, (frame_scores, how)) for 10.1."""
    random = torch.randn(6, 8, 10, generator=_generator(1))
    one_loud = _crafted([[{2: 1.0}] * 4 + [{7: 100.0}]])                # 4 frames say 2 quietly, 1 says 7 loudly
    steady = _crafted([[{3: 5.0}, {3: 5.0, 6: 9.0}, {3: 5.0}, {3: 5.0}]])  # class 3 steady, class 6 once
    tie = _crafted([[{5: 1.0}, {1: 1.0}, {5: 1.0}, {1: 1.0}]])            # 2 votes each for 5 and 1
    penalties = -(20 + 60 * torch.rand(4, 6, 10, generator=_generator(2)))  # minus RBF distances: all negative
    return [
        ("scores of 6 clips of 8 frames, 10 classes, how='mean'", (random, "mean")),
        ("the same scores, how='max'", (random, "max")),
        ("the same scores, how='vote'", (random, "vote")),
        ("one clip: 4 frames prefer class 2 by 1.0, the 5th prefers class 7 by 100.0, how='mean'", (one_loud, "mean")),
        ("the same clip, how='vote'", (one_loud, "vote")),
        ("one clip: class 3 scores 5.0 in all 4 frames, class 6 scores 9.0 in one frame, how='mean'", (steady, "mean")),
        ("the same clip, how='max'", (steady, "max")),
        ("one clip of 4 frames, two won by class 5 and two by class 1, how='vote'", (tie, "vote")),
        ("minus the RBF penalties of 4 clips (every score negative), how='max'", (penalties, "max")),
        ("one clip of a single frame, how='vote'", (random[:1, :1], "vote")),
    ]


@exercise("10.1", "Pool the frames' scores into one prediction per clip", names=("clip_prediction",),
          hint="Pool over the frame axis (dim 1): 'mean' averages each class's scores over the frames, 'max' keeps "
               "each class's largest score, 'vote' counts for each class the frames whose top class (argmax over "
               "dim 2) it is. The prediction is the class with the largest pooled value (argmax over dim 1; ties go "
               "to the smaller class), an integer tensor of shape (N,). Raise ValueError for any other how.")
def _clip_prediction(clip_prediction: Any) -> None:
    for description, args in prediction_cases():
        got = call(clip_prediction, "clip_prediction", args, description)
        expect_tensor(got, _reference_prediction(*args), f"clip_prediction({description})")
    expect_raises(clip_prediction, "clip_prediction", (prediction_cases()[0][1][0], "median"),
                  "scores of 6 clips, how='median'", ValueError)


# --------------------------------------------------------------------------------------------
# 10.2 the direction from the positions
# --------------------------------------------------------------------------------------------

def position_cases() -> list[tuple[str, tuple, torch.Tensor]]:
    """(description, (positions,), expected labels) for 10.2; positions are int64 ``(N, T, 2)``."""
    cases = []
    for description, clips in (
        ("20 clips of 8 frames, 4 directions, 1 pixel per frame", _clips(20, 3, ink=False)),
        ("20 clips of 6 frames, 4 directions, 2 pixels per frame", _clips(20, 4, frames=6, speed=2, ink=False)),
        ("24 clips of 8 frames, 8 directions (with the diagonals), 1 pixel per frame",
         _clips(24, 5, n_directions=8, ink=False)),
        ("12 clips of 2 frames, 8 directions, 3 pixels per frame", _clips(12, 6, frames=2, speed=3, n_directions=8,
                                                                          ink=False)),
    ):
        cases.append((description, (clips.positions,), clips.directions))
    return cases


@exercise("10.2", "A clip's direction from its positions", names=("direction_from_positions",),
          hint="The move from one frame to the next, positions[:, 1] - positions[:, 0] as (row, column), is the "
               "speed times one of the (row step, column step) pairs of DIRECTIONS (rows grow downwards); take "
               "its sign to remove the speed, then find which direction has that step. Its label is its index in "
               "DIRECTIONS: right 0, left 1, down 2, up 3, then the diagonals. Return an integer tensor (N,).")
def _direction_from_positions(direction_from_positions: Any) -> None:
    for description, args, want in position_cases():
        got = call(direction_from_positions, "direction_from_positions", args, description)
        expect_tensor(got, want, f"direction_from_positions({description})")


# --------------------------------------------------------------------------------------------
# 10.3 the output shape of a Conv3d layer
# --------------------------------------------------------------------------------------------

def _triple(value) -> tuple[int, int, int]:
    return (value,) * 3 if isinstance(value, int) else tuple(value)


def _reference_shape(input_size, kernel_size, stride=1, padding=0) -> tuple[int, int, int]:
    weight = torch.zeros(1, 1, *_triple(kernel_size))
    out = F.conv3d(torch.zeros(1, 1, *input_size), weight, stride=_triple(stride), padding=_triple(padding))
    return tuple(out.shape[2:])


def shape_cases() -> list[tuple[str, tuple]]:
    """(description, (input_size, kernel_size, stride, padding)) for 10.3."""
    return [
        ("LeNet3D's C1: 8 frames of 32x32, kernel (3, 5, 5)", ((8, 32, 32), (3, 5, 5), 1, 0)),
        ("LeNet3D's C3: (6, 14, 14), kernel (3, 5, 5)", ((6, 14, 14), (3, 5, 5), 1, 0)),
        ("LeNet3D's C5: (4, 5, 5), kernel (1, 5, 5)", ((4, 5, 5), (1, 5, 5), 1, 0)),
        ("(8, 32, 32), kernel (3, 5, 5), stride (1, 2, 2), padding (0, 2, 2)",
         ((8, 32, 32), (3, 5, 5), (1, 2, 2), (0, 2, 2))),
        ("(16, 16, 16), kernel 3 (an int: 3 on every axis)", ((16, 16, 16), 3, 1, 0)),
        ("(7, 33, 31), kernel 3, stride 2, padding 1", ((7, 33, 31), 3, 2, 1)),
        ("(9, 20, 20), kernel (2, 4, 4), stride (2, 3, 3)", ((9, 20, 20), (2, 4, 4), (2, 3, 3), 0)),
    ]


@exercise("10.3", "The output shape of a 3-D convolution", names=("conv3d_output_shape",),
          hint="Work axis by axis (frames, rows, columns): padding adds 2 * padding to the size, the kernel then "
               "fits at (padded size - kernel) positions after the first one, and a stride s keeps every s-th of "
               "them (round down, so integer division). An int kernel, stride or padding applies to all three "
               "axes. Return a tuple of three ints.")
def _conv3d_output_shape(conv3d_output_shape: Any) -> None:
    fields = ("frames", "rows", "columns")
    for description, args in shape_cases():
        want = _reference_shape(*args)
        got = call(conv3d_output_shape, "conv3d_output_shape", args, description)
        expr = f"conv3d_output_shape({description})"
        if not (isinstance(got, (tuple, list)) and len(got) == 3):
            raise CheckFailed(f"{expr} should return a tuple of 3 ints (frames, rows, columns), got {describe(got)}")
        for field, value in zip(fields, got):
            expect_int(value, f"{expr}: the {field}")
        if tuple(int(v) for v in got) != want:
            raise CheckFailed(f"{expr} should be {want}, got {tuple(int(v) for v in got)}")


# --------------------------------------------------------------------------------------------
# 10.4 frame differences
# --------------------------------------------------------------------------------------------

def _reference_differences(clips: torch.Tensor) -> torch.Tensor:
    return clips[:, 1:] - clips[:, :-1]


def difference_cases() -> list[tuple[str, tuple]]:
    """(description, (clips,)) for 10.4."""
    return [
        ("random clips (2, 5, 1, 6, 6)", (torch.randn(2, 5, 1, 6, 6, generator=_generator(7)),)),
        ("4 clips of a moving bar, (4, 8, 1, 32, 32)", (_clips(4, 8).clips,)),
        ("one clip of 2 frames, (1, 2, 1, 32, 32)", (_clips(1, 9, frames=2).clips,)),
    ]


@exercise("10.4", "Frame differences", names=("frame_differences",),
          hint="Along the time axis (dim 1), subtract each frame from the next one: frame t+1 minus frame t for "
               "t = 0 .. T-2. The result has T-1 frames and keeps the other axes: (N, T-1, 1, H, W).")
def _frame_differences(frame_differences: Any) -> None:
    for description, args in difference_cases():
        got = call(frame_differences, "frame_differences", args, description)
        expect_tensor(got, _reference_differences(*args), f"frame_differences({description})", atol=1e-6)
