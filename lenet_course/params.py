"""Notebook parameters: typed dataclasses that papermill parameters override, validated.

Papermill injects whatever it is given (``-p EPOCHS three`` arrives as the string ``"three"``),
so the cell after each notebook's ``parameters`` cell builds one of these dataclasses from the
notebook's variables::

    P = validate(LessonParams, DATA=DATA, SEED=SEED, FAST=FAST)

A wrong type or value raises :class:`ParameterError` with a message that names the parameter,
what it got and what to pass instead. Each field's ``metadata`` may hold ``choices`` (allowed
values) and ``min`` / ``max`` (bounds for numbers).
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["ParameterError", "LessonParams", "TrainingLessonParams", "LookingInsideParams", "AblationParams",
           "TransferLessonParams", "VideoLessonParams", "validate"]

T = TypeVar("T")


class ParameterError(ValueError):
    """A notebook parameter has the wrong type or value."""


def choice(default: Any, *choices: Any) -> Any:
    return field(default=default, metadata={"choices": choices})


def bounded(default: Any, lo: Any = None, hi: Any = None) -> Any:
    return field(default=default, metadata={"min": lo, "max": hi})


@dataclass(frozen=True)
class LessonParams:
    """The parameters every lesson takes (papermill ``-p NAME VALUE``)."""
    DATA: str = choice("auto", "auto", "sample", "mnist")  # "auto": full MNIST if present, else the sample
    DATA_DIR: str = ""    # folder holding the four MNIST files; "" = $LENET_COURSE_DATA or the cache
    SEED: int = bounded(0, 0, 2**32 - 1)                    # seeds numpy and torch for this notebook
    FAST: bool = False    # the CI profile: the sample, fewest epochs, smallest grids


@dataclass(frozen=True)
class TrainingLessonParams(LessonParams):
    """Lessons that train a network also take the number of passes and the device."""
    EPOCHS: int = bounded(2, 1, 1000)                           # passes over the training set
    DEVICE: str = choice("auto", "auto", "cpu", "cuda", "mps")  # "auto": CUDA when present, else CPU


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _check(name: str, value: Any, tp: Any, meta: typing.Mapping[str, Any]) -> Any:
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    # bool is a subclass of int: True is not a valid EPOCHS, 1 is not a valid FAST.
    if not isinstance(value, tp) or (tp is not bool and isinstance(value, bool)):
        example = {"bool": "True", "int": "3", "float": "0.5", "str": '"auto"'}.get(_type_name(tp), "...")
        raise ParameterError(f"parameter {name} must be a {_type_name(tp)}, got {value!r} "
                             f"({type(value).__name__}); for example: papermill -p {name} {example}")
    choices = meta.get("choices")
    if choices and value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ParameterError(f"parameter {name} must be one of {allowed}, got {value!r}")
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and value < lo or hi is not None and value > hi:
        bounds = f">= {lo}" if hi is None else f"<= {hi}" if lo is None else f"between {lo} and {hi}"
        raise ParameterError(f"parameter {name} must be {bounds}, got {value!r}")
    return value


def validate(cls: type[T], **values: Any) -> T:
    """Build ``cls`` from notebook variables, checking each one's type, choices and bounds."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ParameterError(f"unknown parameter(s) {', '.join(unknown)} for {cls.__name__}; "
                             f"known: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    checked = {name: _check(name, value, hints[name], fields[name].metadata) for name, value in values.items()}
    return cls(**checked)


@dataclass(frozen=True)
class LookingInsideParams(LessonParams):
    """Lesson 07 (looking inside) also takes the digit to look at and the size of the t-SNE sample."""
    DIGIT: int = bounded(0, 0, 9_999)              # index of the test digit drawn layer by layer
    TSNE_POINTS: int = bounded(1_000, 100, 2_000)  # test digits embedded by t-SNE (its time grows with them)


@dataclass(frozen=True)
class AblationParams(TrainingLessonParams):
    """Lesson 08 (ablations): passes and seeds of each configuration, and an optional results file."""
    EPOCHS: int = bounded(3, 1, 1000)  # passes of the fast recipe per run on full MNIST (the sample: 1)
    SEEDS: int = bounded(3, 1, 20)     # runs per configuration, seeds SEED, SEED + 1, ... (the sample: at most 2)
    RESULTS: str = ""                  # a JSON file saving each finished run, reused by a re-run; "" = none


@dataclass(frozen=True)
class TransferLessonParams(LessonParams):
    """Lesson 09 (transfer learning): the pretrained variant, the runs per cell, the updates per run, the device."""
    VARIANT: str = choice("paper", "paper", "modern")           # the pretrained LeNet-5 that is adapted
    SEEDS: int = bounded(2, 1, 20)                              # runs per strategy and size, seeds SEED, SEED + 1, ...
    UPDATES: int = bounded(80, 1, 100_000)                      # optimizer updates of every run, whatever its size
    DEVICE: str = choice("auto", "auto", "cpu", "cuda", "mps")  # "auto": CUDA when present, else CPU


@dataclass(frozen=True)
class VideoLessonParams(TrainingLessonParams):
    """Lesson 10 (from images to video): passes and clips of the clip networks, the pretrained variant."""
    EPOCHS: int = bounded(3, 1, 1000)                   # passes of the 3-D network over its training clips
    CLIPS: int = bounded(0, 0, 60_000)                  # motion-task training clips; 0: 1,000 (sample, FAST), 12,000 (full MNIST)
    VARIANT: str = choice("modern", "modern", "paper")  # the pretrained LeNet-5 that reads the frames
