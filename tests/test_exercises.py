"""Generating exercises/ from solutions/, and grading learner notebooks (executed in a kernel)."""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Callable

import nbformat
import pytest

from lenet_course.checks import TODO_MESSAGE, lesson_exercises
from lenet_course.exercises import (
    ExerciseError, build, format_report, grade, reports_to_json, stale,
)

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS, EXERCISES = ROOT / "solutions", ROOT / "exercises"
NOTEBOOK = "00_data.ipynb"


def _solution() -> nbformat.NotebookNode:
    return nbformat.read(SOLUTIONS / NOTEBOOK, as_version=4)


def _index(nb: nbformat.NotebookNode, cell_id: str) -> int:
    return next(i for i, cell in enumerate(nb.cells) if cell.id == cell_id)


def _cell(nb: nbformat.NotebookNode, cell_id: str) -> nbformat.NotebookNode:
    return nb.cells[_index(nb, cell_id)]


def _new_cell(cell_id: str, source: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(source, id=cell_id)


def _write(nb: nbformat.NotebookNode, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def _copy(source: Path, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(source, path))


# --------------------------------------------------------------------------------------------
# build / stale
# --------------------------------------------------------------------------------------------

def test_committed_exercises_are_generated_from_the_solutions():
    assert stale(SOLUTIONS, EXERCISES) == [], "run `lenet-course exercises build` and commit exercises/"


def test_build_is_deterministic_and_skips_unchanged_files(tmp_path):
    built_a = build(SOLUTIONS, tmp_path / "a")
    built_b = build(SOLUTIONS, tmp_path / "b")
    assert [p.name for p in built_a] == sorted(p.name for p in SOLUTIONS.glob("*.ipynb"))
    for first, second in zip(built_a, built_b):
        assert first.read_bytes() == second.read_bytes() == (EXERCISES / first.name).read_bytes()
        assert first.read_bytes().endswith(b"}\n")
    written = [p.stat().st_mtime_ns for p in built_a]
    assert build(SOLUTIONS, tmp_path / "a") == built_a
    assert [p.stat().st_mtime_ns for p in built_a] == written
    assert stale(SOLUTIONS, tmp_path / "a") == []
    (tmp_path / "a" / "99_orphan.ipynb").write_text("{}")
    assert stale(SOLUTIONS, tmp_path / "a") == ["99_orphan.ipynb"]


def test_the_exercise_notebook_differs_only_in_stubs_and_outputs():
    solution, exercise = _solution(), nbformat.read(EXERCISES / NOTEBOOK, as_version=4)
    assert exercise.metadata == solution.metadata
    assert exercise.metadata.lenet_course.lesson == "00"
    def layout(nb):
        return [(c.id, c.cell_type, c.metadata) for c in nb.cells]
    assert layout(exercise) == layout(solution)
    stubs = {}
    for sol, ex in zip(solution.cells, exercise.cells):
        if ex.cell_type == "code":
            assert ex.outputs == [] and ex.execution_count is None
        if "### BEGIN SOLUTION" in sol.source:
            stubs[sol.metadata.nbgrader.grade_id] = ex.source
        else:
            assert ex.source == sol.source
    assert list(stubs) == ["ex00_1", "ex00_2", "ex00_3", "ex00_4"]
    for (grade_id, source), ex in zip(stubs.items(), lesson_exercises("00")):
        message = json.dumps(f"Exercise {ex.id} ({ex.title}): {ex.hint}", ensure_ascii=False)
        assert f"raise NotImplementedError({message})" in source
        assert "SOLUTION" not in source
    assert stubs["ex00_1"].startswith("def parse_idx_header(data: bytes) -> tuple[int, tuple[int, ...]]:\n")
    assert "\n    raise NotImplementedError(" in stubs["ex00_1"]      # inside the function: indented
    assert "\nraise NotImplementedError(" in stubs["ex00_4"]          # at the top of the cell
    assert stubs["ex00_4"].endswith('print(f"mean {scaled_mean:.3f}, standard deviation {scaled_std:.3f}, '
                                    'variance {scaled_std ** 2:.3f}")')


def _edit_source(cell_id: str, old: str, new: str) -> Callable[[nbformat.NotebookNode], None]:
    def edit(nb):
        cell = _cell(nb, cell_id)
        assert old in cell.source
        cell.source = cell.source.replace(old, new, 1)
    return edit


def _set_grade_id(grade_id: str) -> Callable[[nbformat.NotebookNode], None]:
    def edit(nb):
        _cell(nb, "ex00-1-solution").metadata.nbgrader.grade_id = grade_id
    return edit


def _delete(*cell_ids: str) -> Callable[[nbformat.NotebookNode], None]:
    def edit(nb):
        nb.cells = [cell for cell in nb.cells if cell.id not in cell_ids]
    return edit


def _drop_an_id(nb):
    del nb.cells[0]["id"]


MALFORMED = [
    (_edit_source("ex00-1-solution", "    ### END SOLUTION", "    return magic, dims"),
     r"cell 5: ### BEGIN SOLUTION on line 3 has no ### END SOLUTION"),
    (_edit_source("ex00-1-solution", "    if len(data) < 4:", "    ### BEGIN SOLUTION"),
     r"cell 5: nested ### BEGIN SOLUTION on line 4 \(the one on line 3"),
    (_edit_source("ex00-1-solution", "    ### BEGIN SOLUTION", "    pass"),
     r"### END SOLUTION on line 11 without a ### BEGIN SOLUTION"),
    (_edit_source("ex00-2-solution", "### BEGIN SOLUTION", "## BEGIN SOLUTION"),
     r"cell 8: line 4 '## BEGIN SOLUTION' is not a marker"),
    (_set_grade_id("ex00_9"), r"cell 5: unknown exercise 00\.9; lesson 00 has: 00\.1, 00\.2, 00\.3, 00\.4"),
    (_set_grade_id("00.1"),
     r"cell 5: nbgrader grade_id '00\.1' is not an exercise of lesson 00; exercise 00\.1 is ex00_1"),
    (_set_grade_id("ex01_1"), r"grade_id 'ex01_1' is not an exercise of lesson 00"),
    (_edit_source("setup", "import numpy as np", "### BEGIN SOLUTION\nimport numpy as np\n### END SOLUTION"),
     r"cell 3 has a solution region but is not an nbgrader solution cell"),
    (lambda nb: setattr(_cell(nb, "ex00-3-solution"), "source", "def count_classes(labels):\n    pass\n"),
     r"cell 11: solution cell of exercise 00\.3 has no ### BEGIN SOLUTION \.\.\. ### END SOLUTION region"),
    (_delete("ex00-2-check"), r"cell 8: the cell after the solution of exercise 00\.2 must be its check cell"),
    (_delete("ex00-3-task", "ex00-3-solution", "ex00-3-check"),
     r"no solution cell for exercise\(s\) 00\.3 of lesson 00"),
    (_drop_an_id, r"cell 1 has no cell id"),
]


@pytest.mark.parametrize("edit, error", MALFORMED)
def test_malformed_solution_markup_is_a_clear_error(tmp_path, edit, error):
    nb = _solution()
    edit(nb)
    solutions = tmp_path / "solutions"
    solutions.mkdir()
    (solutions / NOTEBOOK).write_text(json.dumps(nb), encoding="utf-8")  # as is: nbformat.write would add ids
    with pytest.raises(ExerciseError, match=error) as raised:
        build(solutions, tmp_path / "exercises")
    assert str(solutions / NOTEBOOK) in str(raised.value)
    assert not (tmp_path / "exercises").exists()


@pytest.mark.parametrize("content, error", [
    ("this is not json", r"not a notebook: the file is not valid JSON"),
    ("[1, 2]", r"not a Jupyter notebook in nbformat 4"),
    (None, r"no such notebook"),
])
def test_unreadable_notebooks_are_named_before_anything_runs(tmp_path, content, error):
    good = _copy(EXERCISES / NOTEBOOK, tmp_path / NOTEBOOK)
    bad = tmp_path / "00_broken.ipynb"
    if content is not None:
        bad.write_text(content)
    with pytest.raises(ExerciseError, match=error) as raised:
        grade([good, bad])
    assert str(bad) in str(raised.value)


def test_a_notebook_of_no_known_lesson_is_refused(tmp_path):
    nb = _solution()
    del nb.metadata["lenet_course"]
    with pytest.raises(ExerciseError, match="cannot tell which lesson"):
        grade([_write(nb, tmp_path / "my-work.ipynb")])
    nb.metadata["lenet_course"] = {"lesson": "42"}
    with pytest.raises(ExerciseError, match="lesson 42 has no exercises"):
        grade([_write(nb, tmp_path / "my-work.ipynb")])


# --------------------------------------------------------------------------------------------
# grade: notebooks executed in a kernel (one grade() call per time limit)
# --------------------------------------------------------------------------------------------

def _learner_edits(nb: nbformat.NotebookNode) -> None:
    """Ordinary learner edits: each exercise is touched by one of them."""
    del nb.metadata["lenet_course"]  # the lesson then comes from the file name
    # 00.2: a wrong answer
    _cell(nb, "ex00-2-solution").source = "def pad_and_scale(digit):\n    return paper_scale(digit)\n"
    # 00.3: its cells moved up, right after cells a learner added, one of which raises
    block = [nb.cells.pop(_index(nb, i)) for i in ("ex00-3-task", "ex00-3-solution", "ex00-3-check")]
    added = [nbformat.v4.new_markdown_cell("My notes", id="my-notes"),
             _new_cell("my-probe", 'from pathlib import Path\nPath("cwd-probe.txt").write_text("here")'),
             _new_cell("my-error", "1 / 0")]
    at = _index(nb, "setup") + 1
    nb.cells[at:at] = added + block
    # 00.1: the exercise and its check duplicated at the end, the copy wrong (the last check counts)
    copies = [copy.deepcopy(_cell(nb, "ex00-1-solution")), copy.deepcopy(_cell(nb, "ex00-1-check"))]
    copies[0].source = "def parse_idx_header(data):\n    return 0, ()\n"
    copies[0].id, copies[1].id = "again-1", "again-2"
    nb.cells += copies
    # 00.4: its check cell deleted
    nb.cells.pop(_index(nb, "ex00-4-check"))


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The solution, the unsolved exercises and an edited notebook, graded in one call."""
    folder = tmp_path_factory.mktemp("graded")
    solution = _copy(SOLUTIONS / NOTEBOOK, folder / "s" / NOTEBOOK)
    exercise = _copy(EXERCISES / NOTEBOOK, folder / "e" / NOTEBOOK)
    edited = _solution()
    _learner_edits(edited)
    edited_path = _write(edited, folder / "edited" / "00_mine.ipynb")
    reports = grade([solution, exercise, edited_path], timeout=60)
    return dict(zip(("solution", "exercise", "edited"), reports)), folder


def _statuses(report) -> dict[str, str]:
    return {e.id: e.status for e in report.exercises}


def test_the_solution_notebook_passes(graded):
    report = graded[0]["solution"]
    assert report.all_passed and report.lesson == "00" and report.notes == ()
    assert _statuses(report) == dict.fromkeys(["00.1", "00.2", "00.3", "00.4"], "passed")


def test_the_unsolved_exercises_are_not_attempted(graded):
    report = graded[0]["exercise"]
    assert not report.all_passed
    assert _statuses(report) == dict.fromkeys(["00.1", "00.2", "00.3", "00.4"], "not_attempted")
    assert {e.message for e in report.exercises} == {TODO_MESSAGE}


def test_learner_edits_are_graded_as_specified(graded):
    reports, folder = graded
    report = reports["edited"]
    assert report.lesson == "00" and not report.all_passed
    assert _statuses(report) == {"00.1": "failed", "00.2": "failed", "00.3": "passed", "00.4": "missing"}
    by_id = {e.id: e for e in report.exercises}
    assert by_id["00.1"].message.startswith("parse_idx_header(a labels file of 3 digits) should be (2049, (3,)), "
                                            "got tuple (0, ())")
    assert by_id["00.2"].line.startswith("[FAIL] 00.2 Pad and scale a digit the paper's way: "
                                         "pad_and_scale(a blank digit) should have shape (32, 32), got (28, 28)")
    assert by_id["00.4"].line == '[MISSING] 00.4 Measure the mean and spread of the scaled inputs: ' \
                                 'its check cell, check("00.4"), is not in the notebook'
    assert (folder / "edited" / "cwd-probe.txt").read_text() == "here"  # the kernel ran in the notebook's folder


def test_reports_as_text_and_json(graded):
    reports, folder = graded
    ordered = [reports["solution"], reports["exercise"]]
    text = format_report(ordered)
    assert text.startswith(f"{folder / 's' / NOTEBOOK} (lesson 00): 4 of 4 passed\n"
                           "  [PASS] 00.1 Parse an IDX header\n")
    assert f"\n\n{folder / 'e' / NOTEBOOK} (lesson 00): 0 of 4 passed\n  [TODO] 00.1 Parse an IDX header: " in text
    data = json.loads(reports_to_json(ordered))
    assert data["all_passed"] is False
    assert [n["all_passed"] for n in data["notebooks"]] == [True, False]
    assert data["notebooks"][1]["exercises"][0] == {"id": "00.1", "title": "Parse an IDX header",
                                                   "status": "not_attempted", "message": TODO_MESSAGE}


def test_cells_that_never_finish_are_interrupted(tmp_path):
    nb = _solution()
    # 00.1: the learner's function loops, so its check cell hits the limit
    _cell(nb, "ex00-1-solution").source = "def parse_idx_header(data):\n    import time\n    time.sleep(60)\n"
    # 00.2: the solution cell itself hits the limit before defining anything
    _cell(nb, "ex00-2-solution").source = "import time\ntime.sleep(60)\n" + _cell(nb, "ex00-2-solution").source
    # an unrelated slow cell, then one that kills the kernel after the last check
    at = _index(nb, "ex00-2-check") + 1
    nb.cells.insert(at, _new_cell("slow", "import time\ntime.sleep(60)"))
    nb.cells.append(_new_cell("exit", "import os\nos._exit(1)"))
    [report] = grade([_write(nb, tmp_path / NOTEBOOK)], timeout=3)
    assert _statuses(report) == {"00.1": "failed", "00.2": "failed", "00.3": "passed", "00.4": "passed"}
    assert {e.message for e in report.exercises[:2]} == {"cell timed out after 3 s"}
    assert report.notes[0] == f"cell {at + 1} timed out after 3 s"
    assert report.notes[1].startswith(f"cell {len(nb.cells)} stopped the kernel")


# --------------------------------------------------------------------------------------------
# every lesson's exercises: solved they pass, unsolved they are "not attempted"
# --------------------------------------------------------------------------------------------

def test_every_lesson_passes_when_solved_and_fails_when_not(tmp_path):
    """Lesson 00 is graded above; this covers every other lesson that has exercises."""
    names = sorted(p.name for p in SOLUTIONS.glob("[0-9][0-9]_*.ipynb") if p.name != NOTEBOOK)
    if not names:
        pytest.skip("only lesson 00 has exercises so far")
    paths = [_copy(SOLUTIONS / n, tmp_path / "s" / n) for n in names]
    paths += [_copy(EXERCISES / n, tmp_path / "e" / n) for n in names]
    reports = grade(paths, timeout=120)
    solved, unsolved = reports[:len(names)], reports[len(names):]
    for name, report in zip(names, solved):
        assert report.all_passed, f"solutions/{name}:\n{format_report([report])}"
        assert len(report.exercises) >= 3, f"solutions/{name} has fewer than three exercises"
    for name, report in zip(names, unsolved):
        assert {e.status for e in report.exercises} == {"not_attempted"}, f"exercises/{name}:\n{format_report([report])}"
