"""Helpers for the tests of the exercise checks (test_checks.py, test_lessons_01_02.py,
test_lessons_03_04.py, test_lesson_05.py); a plain module, imported by those files.

A test module runs a solution notebook's code in this process (:func:`notebook_namespace`) and
calls the checks on it (:func:`run_check`) and on typical wrong answers (:func:`assert_fails_with`,
and :func:`assert_fails_in_one_line` for answers that raise). Its leak test collects what the
failures print (:func:`printed_lines`) and the code that must never show (:func:`solution_lines`),
then calls :func:`assert_nothing_leaks`. The ``ns`` fixture (a fresh copy of the module's
``solved`` namespace) is in conftest.py.
"""
from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import nbformat

from lenet_course.checks import TODO_MESSAGE, CheckResult, check, get_exercise

_SOLUTION_REGION = re.compile(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", re.S)
_MIN_LEAK = 12  # characters: shorter code lines ("return x") are too common to count as a leak

Wrong = Sequence[tuple[str, dict[str, Any], str]]  # (exercise id, the learner's names, expected text)


def _every_cell(cell: nbformat.NotebookNode) -> bool:
    return True


def notebook_namespace(path: Path, keep: Callable[[nbformat.NotebookNode], bool] = _every_cell, *,
                       record_stubs: bool = False) -> dict:
    """Run the code cells of notebook ``path`` that ``keep`` accepts, in order, in a fresh namespace;
    the check cells (those calling ``check(``) are always left out. With ``record_stubs``, a cell
    that raises NotImplementedError (an exercise stub) is recorded in ``sys.last_value``, as
    IPython would, and the run goes on; otherwise the error propagates."""
    namespace: dict = {}
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "code" or "check(" in cell.source or not keep(cell):
            continue
        try:
            exec(compile(cell.source, f"<{path.name} {cell.id}>", "exec"), namespace)
        except NotImplementedError as exc:
            if not record_stubs:
                raise
            sys.last_value = exc
    return namespace


def run_check(exercise_id: str, namespace: dict, capsys) -> tuple[CheckResult, str]:
    """``check(exercise_id, namespace)`` and what it printed."""
    result = check(exercise_id, namespace)
    return result, capsys.readouterr().out


def assert_fails_with(exercise_id: str, namespace: dict, expected: str, capsys) -> CheckResult:
    """The check of ``exercise_id`` fails with a message that contains ``expected`` and ends with the
    exercise's hint, and prints that message as one ``[FAIL] id title: message`` line."""
    result, out = run_check(exercise_id, namespace, capsys)
    ex = get_exercise(exercise_id)
    assert result.status == "failed"
    assert expected in result.message, result.message
    assert result.message.endswith(f" Hint: {ex.hint}")
    assert out == f"[FAIL] {exercise_id} {ex.title}: {result.message}\n"
    return result


def assert_fails_in_one_line(exercise_id: str, namespace: dict, start: str, capsys) -> CheckResult:
    """The check of ``exercise_id`` fails with a message that starts with ``start``, and prints one
    line, no traceback (for answers that raise)."""
    result, out = run_check(exercise_id, namespace, capsys)
    assert result.status == "failed"
    assert result.message.startswith(start)
    assert out.count("\n") == 1 and "Traceback" not in out
    return result


def assert_stub_not_attempted(exercise_id: str, namespace: dict, capsys) -> None:
    """An answer that still raises the exercise's NotImplementedError is reported as not attempted."""
    ex = get_exercise(exercise_id)

    def stub(*args, **kwargs):
        raise NotImplementedError(f"Exercise {exercise_id} ({ex.title}): ...")
    result, out = run_check(exercise_id, {**namespace, ex.names[0]: stub}, capsys)
    assert result.status == "not_attempted"
    assert out == f"[TODO] {exercise_id} {ex.title}: {TODO_MESSAGE}\n"


def assert_missing_name(exercise_id: str, namespace: dict, name: str, capsys) -> None:
    """Without ``name`` in ``namespace`` the check fails and says to run the cell that defines it."""
    result, _ = run_check(exercise_id, {k: v for k, v in namespace.items() if k != name}, capsys)
    assert result.status == "failed"
    assert result.message.startswith(f"`{name}` is not defined: run the cell above. Hint: ")


def printed_lines(wrong: Wrong, namespace_of: Callable[[str], dict], capsys) -> list[str]:
    """What the check prints for each wrong answer ``(exercise_id, answer, _)`` of ``wrong``, run on
    ``namespace_of(exercise_id)`` with ``answer``'s names put in."""
    return [run_check(exercise_id, {**namespace_of(exercise_id), **answer}, capsys)[1]
            for exercise_id, answer, _ in wrong]


def solution_lines(notebooks: Iterable[Path], references: Iterable[Callable[..., Any]] = ()) -> set[str]:
    """The code no message may show: the lines of the notebooks' solution regions, and the lines of
    the ``references`` that compute something (with a ``return`` or an ``=``); stripped, and only
    those of 12 characters or more."""
    lines: set[str] = set()
    for path in notebooks:
        for cell in nbformat.read(path, as_version=4).cells:
            for region in _SOLUTION_REGION.findall(cell.source):
                lines.update(region.splitlines())
    for reference in references:
        lines.update(line for line in inspect.getsource(reference).splitlines() if "return" in line or "=" in line)
    return {line.strip() for line in lines if len(line.strip()) >= _MIN_LEAK}


def assert_nothing_leaks(shown: Iterable[str], lines: set[str]) -> None:
    """No line of ``lines`` (see :func:`solution_lines`) appears in any text of ``shown``."""
    shown = list(shown)
    leaks = [line for line in lines if any(line in text for text in shown)]
    assert not leaks
