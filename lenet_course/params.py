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

__all__ = ["ParameterError", "LessonParams", "TrainingLessonParams", "validate"]

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
