"""lenet_course.params: papermill parameters, checked by type, choices and bounds."""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

import pytest

from lenet_course.params import LessonParams, ParameterError, TrainingLessonParams, validate


def _names(message: str, name: str) -> bool:
    return re.search(rf"\b{re.escape(name)}\b", message) is not None


# --------------------------------------------------------------------------------------------
# Accepted values
# --------------------------------------------------------------------------------------------

def test_defaults():
    assert validate(LessonParams) == LessonParams(DATA="auto", DATA_DIR="", SEED=0, FAST=False)
    assert validate(TrainingLessonParams) == TrainingLessonParams(EPOCHS=2, DEVICE="auto")


@pytest.mark.parametrize("cls", [LessonParams, TrainingLessonParams])
def test_the_defaults_passed_explicitly_are_accepted(cls):
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    params = validate(cls, **defaults)
    assert type(params) is cls and dataclasses.asdict(params) == defaults


def test_valid_overrides():
    p = validate(TrainingLessonParams, DATA="mnist", DATA_DIR="/data/mnist", SEED=2**32 - 1, FAST=True,
                 EPOCHS=1000, DEVICE="cpu")
    assert (p.DATA, p.DATA_DIR, p.SEED, p.FAST, p.EPOCHS, p.DEVICE) == ("mnist", "/data/mnist", 2**32 - 1,
                                                                        True, 1000, "cpu")
    assert validate(TrainingLessonParams, EPOCHS=1, SEED=0, DATA="sample", DEVICE="mps").EPOCHS == 1
    for device in ("auto", "cpu", "cuda", "mps"):
        assert validate(TrainingLessonParams, DEVICE=device).DEVICE == device


def test_the_result_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        validate(LessonParams).SEED = 3  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# Rejected values: a ParameterError (a ValueError) naming the parameter
# --------------------------------------------------------------------------------------------

WRONG_TYPES = [
    (LessonParams, "SEED", "3"),            # str for int: what papermill's -p SEED three would inject
    (LessonParams, "SEED", 3.0),            # float for int
    (LessonParams, "SEED", True),           # bool for int (bool is a subclass of int)
    (LessonParams, "SEED", None),
    (LessonParams, "FAST", 1),              # int for bool
    (LessonParams, "FAST", 0),
    (LessonParams, "FAST", "True"),         # str for bool
    (LessonParams, "DATA", 1),
    (LessonParams, "DATA", None),
    (LessonParams, "DATA_DIR", 0),
    (TrainingLessonParams, "EPOCHS", "three"),
    (TrainingLessonParams, "EPOCHS", 2.0),
    (TrainingLessonParams, "EPOCHS", False),
    (TrainingLessonParams, "DEVICE", 0),
]


@pytest.mark.parametrize("cls, name, value", WRONG_TYPES, ids=[f"{n}={v!r}" for _, n, v in WRONG_TYPES])
def test_wrong_types_are_rejected(cls, name, value):
    with pytest.raises(ParameterError) as info:
        validate(cls, **{name: value})
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert _names(message, name) and repr(value) in message
    assert f"papermill -p {name} " in message  # says what to pass instead


BAD_VALUES = [
    (LessonParams, "DATA", "full"),
    (LessonParams, "DATA", "AUTO"),
    (LessonParams, "DATA", ""),
    (TrainingLessonParams, "DEVICE", "gpu"),
    (TrainingLessonParams, "DEVICE", "cuda:0"),
    (LessonParams, "SEED", -1),
    (LessonParams, "SEED", 2**32),
    (TrainingLessonParams, "EPOCHS", 0),
    (TrainingLessonParams, "EPOCHS", -3),
    (TrainingLessonParams, "EPOCHS", 1001),
]


@pytest.mark.parametrize("cls, name, value", BAD_VALUES, ids=[f"{n}={v!r}" for _, n, v in BAD_VALUES])
def test_values_outside_choices_or_bounds_are_rejected(cls, name, value):
    with pytest.raises(ParameterError) as info:
        validate(cls, **{name: value})
    message = str(info.value)
    assert _names(message, name) and repr(value) in message
    assert ("must be one of" in message) if isinstance(value, str) else ("between" in message)


def test_choices_and_bounds_are_listed():
    with pytest.raises(ParameterError, match=r"DATA must be one of 'auto', 'sample', 'mnist'"):
        validate(LessonParams, DATA="full")
    with pytest.raises(ParameterError, match=r"EPOCHS must be between 1 and 1000"):
        validate(TrainingLessonParams, EPOCHS=0)


@pytest.mark.parametrize("cls, names", [(LessonParams, ["EPOCHS"]), (LessonParams, ["seed"]),
                                        (TrainingLessonParams, ["DEVICES", "LR"])])
def test_unknown_names_are_rejected(cls, names):
    with pytest.raises(ParameterError) as info:
        validate(cls, **{n: 1 for n in names})
    message = str(info.value)
    assert message.startswith(f"unknown parameter(s) {', '.join(sorted(names))} for {cls.__name__}")
    assert "known: DATA, DATA_DIR, SEED, FAST" in message


# --------------------------------------------------------------------------------------------
# The mechanism on a class of our own: float fields, one-sided bounds
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Custom:
    LR: float = field(default=0.1, metadata={"min": 0.0, "max": 1.0})
    BATCH: int = field(default=32, metadata={"min": 1, "max": None})
    WARMUP: int = field(default=0, metadata={"min": None, "max": 10})


def test_an_int_is_accepted_for_a_float_and_converted():
    p = validate(_Custom, LR=1)
    assert p.LR == 1.0 and type(p.LR) is float


@pytest.mark.parametrize("name, value, says", [
    ("LR", True, "must be a float"), ("LR", "0.1", "must be a float"), ("LR", 1.5, "must be between 0.0 and 1.0"),
    ("BATCH", 0, "must be >= 1"), ("WARMUP", 11, "must be <= 10"),
])
def test_custom_fields_are_checked(name, value, says):
    with pytest.raises(ParameterError, match=re.escape(f"parameter {name} {says}")):
        validate(_Custom, **{name: value})
