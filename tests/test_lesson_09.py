"""Lesson 09 (transfer learning): the exercise checks of lenet_course/checks/lesson09.py, called
directly from Python on the solutions and on typical wrong answers."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lenet_course.checks import get_exercise, lesson09, lesson_exercises
from lenet_course.models import count_parameters, init_paper_
from lenet_course.transfer import TRUNK, freeze, new_head, param_groups, per_class

from exercise_testing import (
    assert_fails_in_one_line, assert_fails_with, assert_missing_name, assert_nothing_leaks, assert_stub_not_attempted,
    notebook_namespace, printed_lines, run_check, solution_lines,
)

SOLUTION = Path(__file__).resolve().parent.parent / "solutions" / "09_transfer.ipynb"
IDS = ["09.1", "09.2", "09.3", "09.4"]


@pytest.fixture(scope="module")
def solved() -> dict:
    """The namespace of the solution notebook run in this process, check cells left out."""
    return notebook_namespace(SOLUTION)


# --------------------------------------------------------------------------------------------
# Registry, the reference solutions, the cases
# --------------------------------------------------------------------------------------------

def test_lesson_09_registers_four_exercises():
    exercises = lesson_exercises("09")
    assert [e.id for e in exercises] == IDS
    assert all(e.title and e.hint and e.names for e in exercises)
    assert [e.names for e in exercises] == [("freeze_upto",), ("replace_head",), ("make_optimizer",),
                                            ("take_per_class",)]


@pytest.mark.parametrize("exercise_id", IDS)
def test_the_solutions_pass(exercise_id, ns, capsys):
    result, out = run_check(exercise_id, ns, capsys)
    assert result.status == "passed", result.message
    assert out == f"[PASS] {exercise_id} {get_exercise(exercise_id).title}\n"


def test_the_cases_are_what_their_descriptions_say():
    for description, (variant, seed), upto in lesson09.freeze_cases():
        assert f"the {variant} LeNet-5" in description and f"upto='{upto}'" in description
    counts = [count_parameters(freeze(lesson09.network(*spec), upto)) for _, spec, upto in lesson09.freeze_cases()]
    assert counts == [850, 11_014, 60_694, 59_134]
    images, labels = lesson09.numbered_digits({3: 20, 5: 12, 8: 10}, seed=3)
    assert np.bincount(labels, minlength=9)[[3, 5, 8]].tolist() == [20, 12, 10]
    assert (images[:, 0, 0] == np.arange(42)).all() and (images == images[:, :1, :1]).all()
    for description, counts_of, n, seed in lesson09.sample_cases():
        assert f"n={n}, seed={seed}" in description and f"{sum(counts_of.values())} digits" in description
    model = lesson09.network("paper", 8, 10, "c3")
    assert not model.c3.weight.requires_grad and model.s4.coef.requires_grad


def test_the_checks_build_their_networks_without_touching_the_global_generator():
    torch.manual_seed(3)
    expected = torch.rand(2)
    torch.manual_seed(3)
    lesson09.network("modern", 5)
    assert torch.equal(torch.rand(2), expected)


# --------------------------------------------------------------------------------------------
# Wrong answers
# --------------------------------------------------------------------------------------------

def _freeze_only_upto(model, upto):
    getattr(model, upto).requires_grad_(False)
    return count_parameters(model)


def _freeze_before_upto(model, upto):
    for name in TRUNK[:TRUNK.index(upto)]:
        getattr(model, name).requires_grad_(False)
    return count_parameters(model)


def _freeze_everything(model, upto):
    model.requires_grad_(False)
    return count_parameters(model)


def _freeze_counting_numel(model, upto):
    freeze(model, upto)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _freeze_counting_all(model, upto):
    freeze(model, upto)
    return sum(p.numel() for p in model.parameters())


def _head_keeping_the_config(model, k):
    model.output = nn.Linear(84, k)
    return model


def _head_for_ten(model, k):
    return new_head(model, 10)


def _head_returning_nothing(model, k):
    new_head(model, k)


def _head_reinitialising_the_trunk(model, k):
    init_paper_(model)
    return new_head(model, k)


def _head_stacked_on_the_old_one(model, k):
    model.output = nn.Sequential(model.output, nn.Linear(10, k))
    model.config = dataclasses.replace(model.config, head="linear")
    return model


def _optimizer_one_rate(model, lr, trunk_lr):
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)


def _optimizer_swapped(model, lr, trunk_lr):
    return torch.optim.AdamW(param_groups(model, trunk_lr, lr))


def _optimizer_with_frozen(model, lr, trunk_lr):
    trunk = [p for name in TRUNK for p in getattr(model, name).parameters()]
    return torch.optim.AdamW([{"params": trunk, "lr": trunk_lr}, {"params": model.output.parameters(), "lr": lr}])


def _optimizer_without_head(model, lr, trunk_lr):
    return torch.optim.AdamW(param_groups(model, lr, trunk_lr)[:1])


def _sample_first_n(images, labels, n, seed=0):
    if n < 1 or n > np.unique(labels, return_counts=True)[1].min():
        raise ValueError("n")
    chosen = np.concatenate([np.flatnonzero(labels == c)[:n] for c in np.unique(labels)])
    return images[chosen], labels[chosen]


def _sample_global(images, labels, n, seed=0):
    chosen = np.concatenate([np.random.permutation(np.flatnonzero(labels == c))[:n] for c in np.unique(labels)])
    return images[chosen], labels[chosen]


def _sample_with_replacement(images, labels, n, seed=0):
    rng = np.random.default_rng(seed)
    chosen = np.concatenate([rng.choice(np.flatnonzero(labels == c), n) for c in np.unique(labels)])
    return images[chosen], labels[chosen]


def _sample_mixing_labels(images, labels, n, seed=0):
    images, labels = per_class(images, labels, n, seed=seed)
    return images[::-1].copy(), labels


def _sample_without_errors(images, labels, n, seed=0):
    rng = np.random.default_rng(seed)
    chosen = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:n] for c in np.unique(labels)])
    return images[chosen], labels[chosen]


F6 = "freeze_upto(the paper LeNet-5 with a new 10-class head, upto='f6')"
C1 = "freeze_upto(the paper LeNet-5 with a new 10-class head, upto='c1')"
RBF10 = "replace_head(the paper LeNet-5 (RBF output), 10 classes)"
MODERN = "make_optimizer(the modern LeNet-5 with a new head, lr=0.01, trunk_lr=0.001)"
FROZEN_C3 = "make_optimizer(the paper LeNet-5 with a new head, frozen up to C3, lr=0.003, trunk_lr=0.0001)"
SIXTY = "take_per_class(60 digits, 6 of each class 0-9, n=2, seed=0)"

WRONG = [
    ("09.1", {"freeze_upto": _freeze_only_upto}, f"after {F6}, c1.weight still trains (requires_grad True)"),
    ("09.1", {"freeze_upto": _freeze_before_upto}, f"after {F6}, f6.weight still trains"),
    ("09.1", {"freeze_upto": _freeze_everything},
     f"after {F6}, output.weight is frozen, but only the layers up to F6 should be"),
    ("09.1", {"freeze_upto": _freeze_counting_numel},
     f"the number of trainable parameters returned by {C1} should be 60694, got int 61594"),
    ("09.1", {"freeze_upto": _freeze_counting_all},
     f"the number of trainable parameters returned by {F6} should be 850, got int 61750"),
    ("09.1", {"freeze_upto": lambda model, upto: float(_freeze_counting_numel(model, upto))},
     f"{F6} should be an int, got float 850.0"),
    ("09.1", {"freeze_upto": lambda model, upto: freeze(model, upto) and None},
     f"{F6} should return the number of trainable parameters, got None"),
    ("09.2", {"replace_head": _head_keeping_the_config},
     f"after {RBF10}, model.config.head should be 'linear' (training picks cross-entropy from it), got 'rbf'"),
    ("09.2", {"replace_head": _head_for_ten},
     "after replace_head(the modern LeNet-5 (linear output), 26 classes), model.output should map F6's 84 features "
     "to 26 classes, got nn.Linear(84, 10)"),
    ("09.2", {"replace_head": _head_returning_nothing},
     f"{RBF10} should return the model it was given (changed in place), got None"),
    ("09.2", {"replace_head": _head_reinitialising_the_trunk},
     f"{RBF10} changed c1.weight: only the output layer should be replaced"),
    ("09.2", {"replace_head": _head_stacked_on_the_old_one},
     f"after {RBF10}, model.output should be an nn.Linear, got Sequential"),
    ("09.3", {"make_optimizer": _optimizer_one_rate},
     f"{MODERN} gives c1.weight the learning rate 0.01; the trunk (C1-F6) should learn at 0.001"),
    ("09.3", {"make_optimizer": _optimizer_swapped},
     f"{MODERN} gives c1.weight the learning rate 0.01; the trunk (C1-F6) should learn at 0.001"),
    ("09.3", {"make_optimizer": _optimizer_with_frozen},
     f"{FROZEN_C3} hands c1.weight to the optimizer, but it is frozen (requires_grad False)"),
    ("09.3", {"make_optimizer": _optimizer_without_head},
     f"{MODERN} leaves out output.weight, which should train with the new output layer"),
    ("09.3", {"make_optimizer": lambda model, lr, trunk_lr: param_groups(model, lr, trunk_lr)},
     f"{MODERN} should return a torch optimizer, got list"),
    ("09.4", {"take_per_class": _sample_first_n},
     "take_per_class(60 digits, 6 of each class 0-9, n=2, seed=0..3) returned the same digits for every seed"),
    ("09.4", {"take_per_class": _sample_global},
     f"{SIXTY} drew other digits on a second call with the same seed"),
    ("09.4", {"take_per_class": _sample_with_replacement}, "returned some digit more than once"),
    ("09.4", {"take_per_class": _sample_mixing_labels},
     f"{SIXTY} returned images with labels that are not their own"),
    ("09.4", {"take_per_class": _sample_without_errors},
     "take_per_class(42 digits of which 10 of class 8, n=11) should raise ValueError, but returned tuple"),
    ("09.4", {"take_per_class": lambda images, labels, n, seed=0: list(per_class(images, labels, n, seed=seed))},
     f"{SIXTY} should return a tuple of two numpy arrays (images, labels), got list"),
]


@pytest.mark.parametrize("exercise_id, answer, expected", WRONG)
def test_wrong_answers_fail_with_what_was_expected(exercise_id, answer, expected, ns, capsys):
    assert_fails_with(exercise_id, {**ns, **answer}, expected, capsys)


def test_a_raising_function_fails_naming_the_exception(ns, capsys):
    def make_optimizer(model, lr, trunk_lr):
        trunk = list(model.parameters())
        return torch.optim.AdamW([{"params": trunk, "lr": trunk_lr}, {"params": model.output.parameters(), "lr": lr}])
    assert_fails_in_one_line("09.3", {**ns, "make_optimizer": make_optimizer},
                             f"{MODERN} raised ValueError: some parameters appear in more than one parameter group",
                             capsys)


def test_the_check_works_on_copies(ns, capsys):
    """The learner's function gets copies: freezing them never reaches the next case's network."""
    seen = []

    def freeze_upto(model, upto):
        seen.append(model)
        return ns_freeze(model, upto)
    ns_freeze = ns["freeze_upto"]
    result, _ = run_check("09.1", {**ns, "freeze_upto": freeze_upto}, capsys)
    assert result.status == "passed"
    assert len({id(m) for m in seen}) == len(lesson09.freeze_cases())


def test_a_missing_function_is_named(ns, capsys):
    assert_missing_name("09.4", ns, "take_per_class", capsys)


@pytest.mark.parametrize("exercise_id", IDS)
def test_a_stub_is_not_attempted(exercise_id, ns, capsys):
    assert_stub_not_attempted(exercise_id, ns, capsys)


def test_messages_never_show_the_solution(ns, capsys):
    lines = solution_lines([SOLUTION], [freeze, new_head, param_groups, per_class])
    assert_nothing_leaks(printed_lines(WRONG, lambda exercise_id: ns, capsys), lines)
