"""Exercise checks: ``check("00.1")`` in the cell after each exercise says whether it is solved.

Each exercise is an :class:`Exercise` registered with the :func:`exercise` decorator in a
per-lesson module, ``lenet_course/checks/lessonNN.py``; that module is imported the first time
an id of lesson NN is asked for, so a new lesson adds its module and nothing else::

    @exercise("00.3", "Count the digits of each class", names=("count_classes",),
              hint="...")
    def _count_classes(count_classes):
        compare_function(count_classes, "count_classes", _reference, CASES, expect_array)

The test function receives the learner's objects named by ``names`` (looked up in the
notebook's namespace) and raises :class:`CheckFailed` with a message that says what was
expected and what came; the helpers below (:func:`call`, :func:`compare_function`,
:func:`expect_array`, :func:`expect_equal`, :func:`expect_close`, :func:`expect_raises`,
:func:`expect_int`, :func:`expect_tuple`, :func:`expect_fields`) write those messages. A
message describes shapes, types and a few sample values; it never shows the reference code.

:func:`check` prints one line, ``[PASS] ...``, ``[FAIL] ...: ... Hint: ...`` or ``[TODO] ...``,
and displays a machine-readable record (mimetype :data:`MIMETYPE`) that
:func:`lenet_course.exercises.grade` collects from an executed notebook.
"""
from __future__ import annotations

import copy
import importlib
import math
import re
import reprlib
import sys
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence, TypeVar

import numpy as np

__all__ = [
    "MIMETYPE", "PASSED", "FAILED", "NOT_ATTEMPTED", "MISSING", "STATUS_TAGS", "TODO_MESSAGE",
    "Exercise", "CheckResult", "CheckFailed", "NotAttempted",
    "exercise", "get_exercise", "lesson_exercises", "check", "format_line",
    "describe", "call", "compare_function", "expect_array", "expect_tensor", "expect_equal", "expect_close",
    "expect_raises", "is_int", "expect_int", "expect_tuple", "expect_fields",
]

MIMETYPE = "application/vnd.lenet-course.check+json"

PASSED, FAILED, NOT_ATTEMPTED = "passed", "failed", "not_attempted"
MISSING = "missing"  # reported by the grader only: an exercise's check cell was deleted or never ran
STATUS_TAGS = {PASSED: "PASS", FAILED: "FAIL", NOT_ATTEMPTED: "TODO", MISSING: "MISSING"}
TODO_MESSAGE = "not attempted yet - replace the NotImplementedError in the cell above"

_ID = re.compile(r"^(\d{2})\.(\d+)$")
_STUB_ID = re.compile(r"^Exercise (\d{2}\.\d+)\b")  # how a generated exercise stub's message starts
_MAX_MESSAGE = 300  # characters of a learner's exception message or value shown in a line

F = TypeVar("F", bound=Callable[..., None])


class CheckFailed(Exception):
    """The learner's answer is wrong; the message says what was expected and what came."""


class NotAttempted(Exception):
    """The learner's code raised NotImplementedError: the exercise is still the stub."""


# --------------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Exercise:
    """One exercise: what the learner sees (id, title, hint) and how it is checked.

    ``names`` are looked up in the learner's namespace and passed, in order, to ``test``, which
    returns None when the answer is right and raises :class:`CheckFailed` otherwise.
    """
    id: str
    title: str
    hint: str
    names: tuple[str, ...]
    test: Callable[..., None]

    @property
    def lesson(self) -> str:
        """The two-digit lesson number, ``"00"`` for exercise ``"00.1"``."""
        return self.id.split(".")[0]


_REGISTRY: dict[str, Exercise] = {}


def _sort_key(exercise_id: str) -> tuple[int, int]:
    lesson, number = exercise_id.split(".")
    return int(lesson), int(number)


def _validate_id(exercise_id: str) -> str:
    if not isinstance(exercise_id, str) or not _ID.match(exercise_id):
        raise ValueError(f"exercise ids look like '00.1' (lesson.number), got {exercise_id!r}")
    return exercise_id


def exercise(exercise_id: str, title: str, *, names: Sequence[str], hint: str) -> Callable[[F], F]:
    """Register the decorated test function as exercise ``exercise_id``; it is returned unchanged."""
    _validate_id(exercise_id)
    if not names:
        raise ValueError(f"exercise {exercise_id}: names is empty; name what the learner defines")

    def register(test: F) -> F:
        if exercise_id in _REGISTRY:
            raise ValueError(f"exercise {exercise_id} is registered twice "
                             f"({_REGISTRY[exercise_id].test.__module__} and {test.__module__})")
        _REGISTRY[exercise_id] = Exercise(exercise_id, title, hint, tuple(names), test)
        return test
    return register


def _import_lesson(lesson: str) -> None:
    """Import ``lenet_course.checks.lessonNN`` (which registers its exercises), if it exists."""
    module = f"{__name__}.lesson{lesson}"
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:  # the lesson module exists but one of its imports is missing
            raise


def lesson_exercises(lesson: str) -> list[Exercise]:
    """The exercises of lesson ``lesson`` (``"00"``), in order; empty when it has none."""
    if not re.fullmatch(r"\d{2}", lesson):
        raise ValueError(f"lessons are numbered with two digits, like '00', got {lesson!r}")
    _import_lesson(lesson)
    return [_REGISTRY[i] for i in sorted(_REGISTRY, key=_sort_key) if _REGISTRY[i].lesson == lesson]


def get_exercise(exercise_id: str) -> Exercise:
    """The registered exercise ``exercise_id``; ValueError naming the lesson's exercises if unknown."""
    lesson = _validate_id(exercise_id).split(".")[0]
    _import_lesson(lesson)
    if exercise_id not in _REGISTRY:
        known = ", ".join(e.id for e in lesson_exercises(lesson)) or "none"
        raise ValueError(f"unknown exercise {exercise_id}; lesson {lesson} has: {known}")
    return _REGISTRY[exercise_id]


# --------------------------------------------------------------------------------------------
# check()
# --------------------------------------------------------------------------------------------

def format_line(tag: str, exercise_id: str, title: str, message: str) -> str:
    """``[TAG] 00.1 Title`` followed by ``: message`` when there is one."""
    return f"[{tag}] {exercise_id} {title}" + (f": {message}" if message else "")


@dataclass(frozen=True)
class CheckResult:
    """What :func:`check` found: ``status`` is ``"passed"``, ``"failed"`` or ``"not_attempted"``
    (and, in the grader's reports, ``"missing"``)."""
    id: str
    title: str
    status: str
    message: str

    @property
    def line(self) -> str:
        """The one line :func:`check` shows."""
        return format_line(STATUS_TAGS[self.status], self.id, self.title, self.message)

    def record(self) -> dict[str, str]:
        """The machine-readable record displayed under :data:`MIMETYPE`."""
        return {"id": self.id, "title": self.title, "status": self.status, "message": self.message}

    def _ipython_display_(self) -> None:
        """Show nothing: :func:`check` has already shown the line, so ``check(...)`` as a
        cell's last expression does not repeat it as ``Out[n]``."""


def _one_line(text: str, limit: int = _MAX_MESSAGE) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _raised_not_implemented(exercise_id: str) -> bool:
    """Whether the last exception a notebook cell raised is this exercise's stub (IPython keeps it
    in ``sys.last_value``); a stub of another exercise does not count."""
    exc = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    if not isinstance(exc, NotImplementedError):
        return False
    stub = _STUB_ID.match(str(exc))
    return stub is None or stub.group(1) == exercise_id


def _evaluate(ex: Exercise, namespace: Mapping[str, Any]) -> tuple[str, str]:
    missing = [name for name in ex.names if name not in namespace]
    if missing:
        if _raised_not_implemented(ex.id):
            return NOT_ATTEMPTED, TODO_MESSAGE
        names = ", ".join(f"`{name}`" for name in missing)
        verb = "is" if len(missing) == 1 else "are"
        return FAILED, f"{names} {verb} not defined: run the cell above. Hint: {ex.hint}"
    try:
        ex.test(*(namespace[name] for name in ex.names))
    except (NotAttempted, NotImplementedError):
        return NOT_ATTEMPTED, TODO_MESSAGE
    except CheckFailed as failure:
        return FAILED, f"{_one_line(str(failure))} Hint: {ex.hint}"
    except Exception as exc:  # the learner's objects broke the check itself: report, do not crash
        return FAILED, f"the check stopped on {_exception_text(exc)} Hint: {ex.hint}"
    return PASSED, ""


def _show(result: CheckResult) -> None:
    """Display the line and the record in IPython (a kernel stores both); print the line elsewhere."""
    ipython = sys.modules.get("IPython")
    if ipython is None or ipython.get_ipython() is None:
        print(result.line)
        return
    from IPython.display import display
    display({"text/plain": result.line, MIMETYPE: result.record()}, raw=True)


def check(exercise_id: str, namespace: Mapping[str, Any] | None = None) -> CheckResult:
    """Check exercise ``exercise_id`` against the learner's code and show one line about it.

    ``namespace`` holds the learner's names; it defaults to the caller's globals (in a notebook,
    the user namespace). Returns the :class:`CheckResult`; raises ValueError for an unknown id.
    """
    namespace = sys._getframe(1).f_globals if namespace is None else namespace
    ex = get_exercise(exercise_id)
    status, message = _evaluate(ex, namespace)
    result = CheckResult(ex.id, ex.title, status, message)
    _show(result)
    return result


# --------------------------------------------------------------------------------------------
# Helpers for lesson modules
# --------------------------------------------------------------------------------------------

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 60
_repr.maxlist = _repr.maxtuple = 6


def describe(value: Any) -> str:
    """A short description of a learner's value: an array's or tensor's shape and dtype, else a short repr."""
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    if hasattr(value, "detach") and hasattr(value, "shape"):  # a torch tensor (torch is not imported here)
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    if value is None:
        return "None"
    return f"{type(value).__name__} {_repr.repr(value)}"


def expect_tensor(got: Any, want: Any, expr: str, *, atol: float = 1e-6) -> None:
    """``got`` is a torch tensor with ``want``'s shape, kind of dtype (integers or floats) and values."""
    if not (hasattr(got, "detach") and hasattr(got, "shape")):
        hint = " (use torch operations throughout, or convert with torch.as_tensor)" if isinstance(got, np.ndarray) else ""
        raise CheckFailed(f"{expr} should return a torch tensor, got {describe(got)}{hint}")
    expect_array(got.detach().cpu().numpy(), want.detach().cpu().numpy(), expr, same_kind=True, atol=atol)


def _exception_text(exc: BaseException) -> str:
    text = _one_line(str(exc), 200)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _invoke(fn: Any, name: str, args: tuple) -> Any:
    """``fn(*args)`` on deep copies (the learner may modify its inputs); the stub's
    NotImplementedError becomes :class:`NotAttempted`, other exceptions propagate."""
    if not callable(fn):
        raise CheckFailed(f"`{name}` should be a function, got {describe(fn)}")
    try:
        return fn(*copy.deepcopy(args))
    except NotImplementedError:
        raise NotAttempted() from None


def call(fn: Any, name: str, args: tuple, description: str) -> Any:
    """Call the learner's function ``name`` on ``args`` (described to the learner as
    ``description``); an exception it raises becomes a :class:`CheckFailed` naming it."""
    try:
        return _invoke(fn, name, args)
    except (CheckFailed, NotAttempted):
        raise
    except Exception as exc:
        raise CheckFailed(f"{name}({description}) raised {_exception_text(exc)}") from None


def compare_function(fn: Any, name: str, reference: Callable[..., Any],
                     cases: Sequence[tuple[str, tuple]],
                     compare: Callable[[Any, Any, str], None]) -> None:
    """Compare the learner's ``fn`` with ``reference`` on each ``(description, args)`` case,
    with ``compare(got, want, expr)`` (e.g. :func:`expect_array`); stops at the first failure."""
    for description, args in cases:
        want = reference(*copy.deepcopy(args))
        got = call(fn, name, args, description)
        compare(got, want, f"{name}({description})")


def expect_raises(fn: Any, name: str, args: tuple, description: str,
                  expected: type[Exception]) -> None:
    """The learner's ``fn(*args)`` must raise ``expected`` (or a subclass)."""
    try:
        got = _invoke(fn, name, args)
    except (CheckFailed, NotAttempted):
        raise
    except expected:
        return
    except Exception as exc:
        raise CheckFailed(f"{name}({description}) should raise {expected.__name__}, "
                          f"but raised {_exception_text(exc)}") from None
    raise CheckFailed(f"{name}({description}) should raise {expected.__name__}, but returned {describe(got)}")


def _equal(got: Any, want: Any) -> bool:
    try:
        return bool(got == want)
    except Exception:  # e.g. an array compared with a tuple: ambiguous, so not equal
        return False


def expect_equal(got: Any, want: Any, expr: str) -> None:
    """``got == want`` (tuples, ints, strings...); the message shows both."""
    if not _equal(got, want):
        raise CheckFailed(f"{expr} should be {want!r}, got {describe(got)}")


def is_int(value: Any) -> bool:
    """Whether ``value`` is an integer, a Python or a numpy one; a bool is not."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def expect_int(got: Any, expr: str) -> None:
    """``got`` is an integer (:func:`is_int`): a float such as ``156.0`` fails, whatever its value."""
    if not is_int(got):
        raise CheckFailed(f"{expr} should be an int, got {describe(got)}")


def expect_tuple(got: Any, fields: Sequence[str], expr: str, *, lists: bool = False) -> None:
    """``got`` is a tuple (or a list too, when ``lists``) of ``len(fields)`` values; the message
    names the fields: ``f(...) should return a tuple (parameters, connections), got int 156``."""
    if not (isinstance(got, (tuple, list) if lists else tuple) and len(got) == len(fields)):
        raise CheckFailed(f"{expr} should return a tuple ({', '.join(fields)}), got {describe(got)}")


def expect_fields(got: Any, want: Sequence[Any], fields: Sequence[str], expr: str) -> None:
    """``got`` is a tuple of ``len(fields)`` values (:func:`expect_tuple`), each equal to ``want``'s
    (:func:`expect_equal`); a message names the field: ``the parameters of f(...) should be 156, ...``."""
    expect_tuple(got, fields, expr)
    for field, g, w in zip(fields, got, want):
        expect_equal(g, w, f"the {field} of {expr}")


def expect_close(got: Any, want: float, expr: str, *, rtol: float = 1e-3) -> None:
    """``got`` is a single real number within relative tolerance ``rtol`` of ``want``."""
    if isinstance(got, (str, bytes, bool)) or np.ndim(got) != 0:
        raise CheckFailed(f"{expr} should be a single number, got {describe(got)}")
    try:
        value = float(got)
    except (TypeError, ValueError):
        raise CheckFailed(f"{expr} should be a single number, got {describe(got)}") from None
    if not math.isclose(value, want, rel_tol=rtol, abs_tol=1e-12):
        raise CheckFailed(f"{expr} should be about {want:.6g}, got {value:.6g}")


_FAMILIES = ((np.bool_, "booleans"), (np.integer, "integers"), (np.floating, "floats"),
             (np.complexfloating, "complex numbers"))


def _family(dtype: np.dtype) -> str:
    return next((label for kind, label in _FAMILIES if np.issubdtype(dtype, kind)), str(dtype))


def _number(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, (float, np.floating)) else str(value)


def expect_array(got: Any, want: np.ndarray, expr: str, *, same_kind: bool = False,
                 atol: float = 1e-6) -> None:
    """``got`` is a numpy array like ``want``: type, shape, dtype (exactly, or only its kind when
    ``same_kind``), then values (within ``atol`` for floats); the message names the first difference."""
    if not isinstance(got, np.ndarray):
        raise CheckFailed(f"{expr} should return a numpy array, got {describe(got)}")
    if got.shape != want.shape:
        raise CheckFailed(f"{expr} should have shape {want.shape}, got {got.shape}")
    if same_kind and _family(got.dtype) != _family(want.dtype):
        raise CheckFailed(f"{expr} should hold {_family(want.dtype)}, got dtype {got.dtype}")
    if not same_kind and got.dtype != want.dtype:
        raise CheckFailed(f"{expr} should have dtype {want.dtype}, got {got.dtype}")
    if np.issubdtype(want.dtype, np.inexact):
        wrong = ~np.isclose(got, want, rtol=0.0, atol=atol)
    else:
        wrong = got != want
    if wrong.any():
        first = tuple(int(i) for i in np.argwhere(wrong)[0])
        index = ", ".join(map(str, first))
        raise CheckFailed(f"{expr}: {int(wrong.sum()):,} of {want.size:,} values differ; first at [{index}]: "
                          f"expected {_number(want[first])}, got {_number(got[first])}")
