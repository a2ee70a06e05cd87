"""Exercise notebooks: generate ``exercises/`` from ``solutions/``, and grade a learner's notebook.

``solutions/NN_name.ipynb`` is the single source. Each exercise's code sits between the nbgrader
markers ``### BEGIN SOLUTION`` and ``### END SOLUTION`` in a code cell whose metadata is
``nbgrader: {"solution": true, "grade": false, "locked": false, "grade_id": "ex00_1",
"schema_version": 3}`` (nbgrader only allows letters, digits, ``_`` and ``-`` in a grade_id,
so exercise ``00.1`` is ``ex00_1``); the very next cell is its check, ``check("00.1")``.

:func:`build` writes ``exercises/NN_name.ipynb`` with each solution region replaced by
``raise NotImplementedError("Exercise 00.1 (<title>): <hint>")`` and every output cleared;
:func:`stale` says which committed exercise notebooks differ from what :func:`build` would write.

:func:`grade` executes learner notebooks and reports every exercise of their lesson as passed,
failed, not attempted or missing, from the records that :func:`lenet_course.checks.check` leaves
in the outputs. It gives feedback; it is not an exam proctor: a learner who wants to can forge
a record, so use nbgrader for marks that count.
"""
from __future__ import annotations

import copy
import json
import logging
import os
import re
import site
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import nbformat
from nbformat import NotebookNode

from lenet_course.files import atomic_write
from lenet_course.checks import (
    FAILED, MIMETYPE, MISSING, NOT_ATTEMPTED, PASSED, CheckResult, Exercise, get_exercise,
    lesson_exercises,
)

__all__ = [
    "BEGIN", "END", "ExerciseError", "NotebookReport",
    "exercise_notebook", "build", "stale", "grade", "format_report", "reports_to_json",
]

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"

_GRADE_ID = re.compile(r"^ex(\d{2})_(\d+)$")                     # nbgrader grade_id of exercise NN.K
_CHECK_CALL = re.compile(r"""\bcheck\(\s*["'](\d{2}\.\d+)["']""")  # a check cell's call
_LESSON_PREFIX = re.compile(r"^(\d{2})_")
_TIMEOUT_ENAME = "CellTimeoutError"


class ExerciseError(ValueError):
    """A notebook cannot be read, or a solution notebook's exercise markup is malformed."""


# --------------------------------------------------------------------------------------------
# Reading notebooks
# --------------------------------------------------------------------------------------------

def _read(path: Path) -> NotebookNode:
    """The notebook at ``path`` as stored (no upgrade, no new cell ids); ExerciseError naming
    the file when it is missing, not JSON or not an nbformat-4 notebook."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExerciseError(f"{path}: no such notebook") from None
    except OSError as exc:
        raise ExerciseError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExerciseError(f"{path}: not a notebook: the file is not valid JSON ({exc})") from None
    if not (isinstance(raw, dict) and raw.get("nbformat") == 4 and isinstance(raw.get("cells"), list)
            and all(isinstance(cell, dict) and "cell_type" in cell for cell in raw["cells"])):
        raise ExerciseError(f"{path}: not a Jupyter notebook in nbformat 4 (no list of cells)")
    return nbformat.v4.to_notebook_json(raw)


def _lesson(nb: NotebookNode, path: Path) -> str:
    """The lesson a notebook belongs to: metadata ``lenet_course.lesson``, else the file's ``NN_``."""
    lesson = nb.metadata.get("lenet_course", {}).get("lesson")
    if lesson is None:
        prefix = _LESSON_PREFIX.match(path.name)
        if prefix is None:
            raise ExerciseError(f"{path}: cannot tell which lesson this is: no metadata "
                                "lenet_course.lesson and the file name does not start with NN_")
        lesson = prefix.group(1)
    if not (isinstance(lesson, str) and re.fullmatch(r"\d{2}", lesson)):
        raise ExerciseError(f"{path}: metadata lenet_course.lesson must be two digits like \"00\", got {lesson!r}")
    return lesson


def _expected_exercises(nb: NotebookNode, path: Path) -> tuple[str, list[Exercise]]:
    lesson = _lesson(nb, path)
    exercises = lesson_exercises(lesson)
    if not exercises:
        raise ExerciseError(f"{path}: lesson {lesson} has no exercises "
                            f"(there is no lenet_course/checks/lesson{lesson}.py)")
    return lesson, exercises


def _grade_id(cell: NotebookNode) -> str | None:
    """The nbgrader grade_id of a solution cell (``""`` when it has none); None for other cells."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return str(meta.get("grade_id", "")) if meta.get("solution") else None


def _solution_id(cell: NotebookNode) -> str | None:
    """The exercise a solution cell solves (grade_id ``ex00_1`` -> ``"00.1"``), else None."""
    match = _GRADE_ID.match(_grade_id(cell) or "")
    return f"{match.group(1)}.{int(match.group(2))}" if match else None


def _check_ids(cell: NotebookNode) -> list[str]:
    """The exercise ids a code cell checks (``check("00.1")``)."""
    return _CHECK_CALL.findall(cell.source) if cell.cell_type == "code" else []


def _exercise_cells(nb: NotebookNode) -> dict[int, set[str]]:
    """Cell index -> the exercises that cell belongs to (as solution or check), for tied cells only."""
    owners = {i: set(_check_ids(cell)) | ({_solution_id(cell)} - {None}) for i, cell in enumerate(nb.cells)}
    return {i: ids for i, ids in owners.items() if ids}


# --------------------------------------------------------------------------------------------
# Building exercises/ from solutions/
# --------------------------------------------------------------------------------------------

def _regions(lines: list[str], where: str) -> list[tuple[int, int]]:
    """(begin, end) line indices of each solution region; ExerciseError for malformed markers."""
    regions, begin = [], None
    for number, line in enumerate(lines):
        text = line.strip()
        if text == BEGIN:
            if begin is not None:
                raise ExerciseError(f"{where}: nested {BEGIN} on line {number + 1} "
                                    f"(the one on line {begin + 1} has no {END} yet)")
            begin = number
        elif text == END:
            if begin is None:
                raise ExerciseError(f"{where}: {END} on line {number + 1} without a {BEGIN} before it")
            regions.append((begin, number))
            begin = None
        elif text.startswith("#") and re.search(r"(BEGIN|END) SOLUTION", text, re.IGNORECASE):
            raise ExerciseError(f"{where}: line {number + 1} {text!r} is not a marker; "
                                f"write exactly {BEGIN!r} or {END!r}")
    if begin is not None:
        raise ExerciseError(f"{where}: {BEGIN} on line {begin + 1} has no {END}")
    return regions


def _stub(source: str, regions: list[tuple[int, int]], ex: Exercise) -> str:
    """``source`` with each region replaced by a ``raise NotImplementedError`` at its indentation."""
    lines = source.splitlines(keepends=True)
    message = json.dumps(f"Exercise {ex.id} ({ex.title}): {ex.hint}", ensure_ascii=False)
    for begin, end in reversed(regions):
        indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
        newline = "\n" if lines[end].endswith("\n") else ""
        lines[begin: end + 1] = [f"{indent}raise NotImplementedError({message}){newline}"]
    return "".join(lines)


def exercise_notebook(solution: NotebookNode, path: Path) -> NotebookNode:
    """The exercise version of the solution notebook ``solution`` (read from ``path``, which
    error messages name): solution regions stubbed, outputs and execution counts cleared."""
    lesson, exercises = _expected_exercises(solution, path)
    nb = copy.deepcopy(solution)
    seen: set[str] = set()
    for index, cell in enumerate(nb.cells):
        where = f"{path}, cell {index + 1}"
        if "id" not in cell:
            raise ExerciseError(f"{where} has no cell id (nbformat < 4.5); save the notebook with a "
                                "current Jupyter so that the exercise notebook is reproducible")
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        regions = _regions(cell.source.splitlines(keepends=True), where)
        grade_id = _grade_id(cell)
        if grade_id is None:
            if regions:
                raise ExerciseError(f"{where} has a solution region but is not an nbgrader solution "
                                    f"cell: set metadata nbgrader.solution = true and a grade_id like ex{lesson}_1")
            continue
        if cell.cell_type != "code":
            raise ExerciseError(f"{where}: solution cells must be code cells, this is {cell.cell_type}")
        exercise_id = _solution_id(cell)
        if exercise_id is None or not exercise_id.startswith(f"{lesson}."):
            raise ExerciseError(f"{where}: nbgrader grade_id {grade_id!r} is not an exercise of lesson "
                                f"{lesson}; exercise {lesson}.1 is ex{lesson}_1 (nbgrader allows only "
                                "letters, digits, _ and - in a grade_id)")
        try:
            ex = get_exercise(exercise_id)
        except ValueError as exc:
            raise ExerciseError(f"{where}: {exc}") from None
        if exercise_id in seen:
            raise ExerciseError(f"{where}: a second solution cell for exercise {exercise_id}")
        if not regions:
            raise ExerciseError(f"{where}: solution cell of exercise {exercise_id} has no {BEGIN} ... {END} region")
        following = nb.cells[index + 1] if index + 1 < len(nb.cells) else None
        if following is None or exercise_id not in _check_ids(following):
            raise ExerciseError(f"{where}: the cell after the solution of exercise {exercise_id} "
                                f"must be its check cell, check(\"{exercise_id}\")")
        cell.source = _stub(cell.source, regions, ex)
        seen.add(exercise_id)
    unsolved = [e.id for e in exercises if e.id not in seen]
    if unsolved:
        raise ExerciseError(f"{path}: no solution cell for exercise(s) {', '.join(unsolved)} "
                            f"of lesson {lesson} (registered in lenet_course/checks/lesson{lesson}.py)")
    return nb


def _render(nb: NotebookNode) -> bytes:
    """The notebook's bytes on disk: nbformat's JSON (sorted keys, indent 1) ending in a newline."""
    text = nbformat.writes(nb, version=4)
    return (text if text.endswith("\n") else text + "\n").encode("utf-8")


def _planned(solutions_dir: Path) -> dict[str, bytes]:
    """File name -> bytes of every exercise notebook that :func:`build` writes."""
    return {path.name: _render(exercise_notebook(_read(path), path))
            for path in sorted(Path(solutions_dir).glob("*.ipynb"))}


def build(solutions_dir: str | os.PathLike, exercises_dir: str | os.PathLike) -> list[Path]:
    """Generate ``exercises_dir/NN_name.ipynb`` from every ``solutions_dir/NN_name.ipynb``.

    Every solution notebook is converted before anything is written, so a malformed one
    (ExerciseError) leaves ``exercises_dir`` untouched. Files whose bytes would not change are
    not rewritten. Returns the paths of all exercise notebooks, in order. Exercise notebooks
    without a solution notebook are left alone (:func:`stale` lists them).
    """
    planned = _planned(Path(solutions_dir))
    exercises_dir = Path(exercises_dir)
    exercises_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in planned.items():
        target = exercises_dir / name
        if not (target.is_file() and target.read_bytes() == data):
            atomic_write(target, data)
        paths.append(target)
    return paths


def stale(solutions_dir: str | os.PathLike, exercises_dir: str | os.PathLike) -> list[str]:
    """File names in ``exercises_dir`` that differ from what :func:`build` would write there:
    out of date, missing, or without a solution notebook. Empty when everything is current."""
    planned = _planned(Path(solutions_dir))
    exercises_dir = Path(exercises_dir)
    names = set(planned) | {path.name for path in exercises_dir.glob("*.ipynb")}
    return sorted(name for name in names
                  if name not in planned or not (exercises_dir / name).is_file()
                  or (exercises_dir / name).read_bytes() != planned[name])


# --------------------------------------------------------------------------------------------
# Grading
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NotebookReport:
    """The grade of one notebook: one report per exercise of its lesson, in order, and notes
    about cells that timed out or killed the kernel outside any exercise."""
    path: Path
    lesson: str
    exercises: tuple[CheckResult, ...]
    notes: tuple[str, ...] = ()

    @property
    def passed(self) -> int:
        """How many exercises passed."""
        return sum(e.status == PASSED for e in self.exercises)

    @property
    def all_passed(self) -> bool:
        """Whether every exercise of the lesson passed."""
        return bool(self.exercises) and self.passed == len(self.exercises)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what :func:`reports_to_json` writes for this notebook)."""
        return {"path": str(self.path), "lesson": self.lesson, "all_passed": self.all_passed,
                "passed": self.passed, "total": len(self.exercises),
                "exercises": [asdict(e) for e in self.exercises],
                "notes": list(self.notes)}


class _Watch:
    """nbclient hooks: which cell is running, and what happened to cells that did not finish."""

    def __init__(self, timeout: int) -> None:
        self.timeout = timeout
        self.current: int | None = None
        self.fates: dict[int, str] = {}  # cell index -> "timed out after N s" / "stopped the kernel (...)"

    def on_cell_start(self, cell: NotebookNode, cell_index: int) -> None:
        self.current = cell_index

    def on_cell_executed(self, cell: NotebookNode, cell_index: int, execute_reply: dict) -> None:
        if execute_reply and execute_reply.get("content", {}).get("ename") == _TIMEOUT_ENAME:
            self.fates[cell_index] = f"timed out after {self.timeout} s"


def _kernel_env() -> dict[str, str]:
    """The grader's environment, with this copy of lenet_course importable in the kernel: a
    source checkout that is not pip-installed is added to PYTHONPATH (site-packages never is)."""
    env = dict(os.environ)
    root = Path(__file__).resolve().parent.parent
    site_dirs = {Path(p).resolve() for p in [*site.getsitepackages(), site.getusersitepackages()]}
    if root not in site_dirs:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    return env


def _execute(nb: NotebookNode, path: Path, timeout: int) -> dict[int, str]:
    """Run every cell of ``nb`` in place (outputs land in ``nb``) in a fresh python3 kernel
    started in the notebook's folder; returns the fates of cells that did not finish. The
    kernel's own stderr (startup warnings) is dropped: what the cells print arrives as outputs."""
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    watch = _Watch(timeout)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", allow_errors=True, interrupt_on_timeout=True,
        error_on_timeout={"ename": _TIMEOUT_ENAME, "evalue": f"cell timed out after {timeout} s",
                          "traceback": []},
        record_timing=False, resources={"metadata": {"path": str(path.resolve().parent)}},
        on_cell_start=watch.on_cell_start, on_cell_executed=watch.on_cell_executed,
        log=logging.getLogger(__name__))
    try:
        client.execute(env=_kernel_env(), stderr=subprocess.DEVNULL)
    except DeadKernelError as exc:
        if watch.current is not None:
            watch.fates[watch.current] = f"stopped the kernel ({exc})"
    return watch.fates


def _records(nb: NotebookNode, wanted: set[str]) -> dict[str, dict]:
    """The last check record of each wanted exercise found in the outputs, in notebook order."""
    records: dict[str, dict] = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            record = output.get("data", {}).get(MIMETYPE)
            if (isinstance(record, dict) and record.get("id") in wanted
                    and record.get("status") in (PASSED, FAILED, NOT_ATTEMPTED)):
                records[record["id"]] = record
    return records


def _error_text(cell: NotebookNode) -> str | None:
    errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    return f"{errors[-1].get('ename')}: {errors[-1].get('evalue')}" if errors else None


def _report(ex: Exercise, nb: NotebookNode, owners: dict[int, set[str]], record: dict | None,
            fates: dict[int, str]) -> CheckResult:
    cells = [i for i, ids in owners.items() if ex.id in ids]
    fate = next((fates[i] for i in cells if i in fates), None)
    if record is not None and (record["status"] == PASSED or fate is None):
        return CheckResult(ex.id, ex.title, record["status"], str(record.get("message", "")))
    if fate is not None:
        return CheckResult(ex.id, ex.title, FAILED, f"cell {fate}")
    check_cells = [i for i in cells if ex.id in _check_ids(nb.cells[i])]
    if not check_cells:
        return CheckResult(ex.id, ex.title, MISSING, f"its check cell, check(\"{ex.id}\"), is not in the notebook")
    error = _error_text(nb.cells[check_cells[-1]])
    reason = f"raised {error}" if error else "did not run"
    return CheckResult(ex.id, ex.title, MISSING, f"its check cell {reason}")


def grade(paths: Iterable[str | os.PathLike], timeout: int = 60) -> list[NotebookReport]:
    """Execute each learner notebook and report every exercise of its lesson.

    Each notebook runs in a fresh ``python3`` kernel in its own folder, every cell limited to
    ``timeout`` seconds (then interrupted); errors do not stop the run. The lesson comes from
    the notebook's metadata ``lenet_course.lesson`` or its file name's ``NN_`` prefix. All
    notebooks are read first: one that cannot be read, or whose lesson is unknown, raises
    :class:`ExerciseError` naming the file before anything runs. The files are not modified.
    """
    notebooks = []
    for path in map(Path, paths):
        nb = _read(path)
        notebooks.append((path, nb, *_expected_exercises(nb, path)))
    reports = []
    for path, nb, lesson, exercises in notebooks:
        fates = _execute(nb, path, timeout)
        records = _records(nb, {e.id for e in exercises})
        owners = _exercise_cells(nb)
        notes = tuple(f"cell {i + 1} {fate}" for i, fate in sorted(fates.items()) if i not in owners)
        results = tuple(_report(e, nb, owners, records.get(e.id), fates) for e in exercises)
        reports.append(NotebookReport(path, lesson, results, notes))
    return reports


def format_report(reports: Sequence[NotebookReport]) -> str:
    """A plain-text report: per notebook a summary line, one line per exercise, then notes."""
    blocks = []
    for report in reports:
        lines = [f"{report.path} (lesson {report.lesson}): {report.passed} of {len(report.exercises)} passed"]
        lines += [f"  {e.line}" for e in report.exercises]
        lines += [f"  note: {note}" for note in report.notes]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def reports_to_json(reports: Sequence[NotebookReport]) -> str:
    """The reports as JSON: ``{"all_passed": bool, "notebooks": [NotebookReport.to_dict(), ...]}``."""
    return json.dumps({"all_passed": all(r.all_passed for r in reports),
                       "notebooks": [r.to_dict() for r in reports]}, indent=2, ensure_ascii=False)
