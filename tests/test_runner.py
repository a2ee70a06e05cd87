"""The course runner: the whole course in fast mode, failure reporting, notebook parameter checks."""
from __future__ import annotations

import json

import nbformat
import papermill
import pytest
from nbformat.v4 import new_code_cell, new_notebook
from papermill.exceptions import PapermillExecutionError

from lenet_course.runner import CourseError, lesson_notebooks, repo_root, run_course

LESSON_00 = repo_root() / "notebooks" / "00_setup_and_data.ipynb"


def _notebook(path, *sources, params="FAST = False"):
    cell = new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[cell, *(new_code_cell(s) for s in sources)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_the_whole_course_runs_in_fast_mode(tmp_path):
    out = tmp_path / "build"
    runs = run_course(output_dir=out, fast=True, progress=False)
    lessons = lesson_notebooks(repo_root() / "notebooks")
    assert [r.notebook for r in runs] == [p.name for p in lessons]
    assert all(r.status == "passed" for r in runs), runs
    summary = json.loads((out / "summary.json").read_text())
    assert summary["fast"] is True and summary["data"] == "sample"
    assert [n["status"] for n in summary["notebooks"]] == ["passed"] * len(lessons)
    assert all(n["seconds"] > 0 for n in summary["notebooks"])
    index = (out / "index.html").read_text()
    for lesson in lessons:
        executed = nbformat.read(out / lesson.name, as_version=4)
        assert executed.metadata["papermill"]["parameters"]["FAST"] is True
        assert (out / "html" / f"{lesson.stem}.html").stat().st_size > 0
        assert f"html/{lesson.stem}.html" in index


def test_a_failing_lesson_stops_the_run_and_is_named(tmp_path):
    lessons = tmp_path / "lessons"
    lessons.mkdir()
    _notebook(lessons / "00_fine.ipynb", "x = 1")
    _notebook(lessons / "01_broken.ipynb", "y = 2", "raise ValueError('C3 table has 59 links')")
    _notebook(lessons / "02_later.ipynb", "z = 3")
    out = tmp_path / "out"
    with pytest.raises(CourseError) as err:
        run_course(lessons, out, html_pages=False, progress=False)
    message = str(err.value)
    assert "01_broken.ipynb" in message and "ValueError" in message and "59 links" in message
    assert "cell [4]" in message  # In [4]: parameters, injected parameters, y = 2, then the raise
    summary = json.loads((out / "summary.json").read_text())
    assert [n["status"] for n in summary["notebooks"]] == ["passed", "failed", "not run"]
    assert "59 links" in summary["notebooks"][1]["error"]
    assert not (out / "02_later.ipynb").exists()
    assert (out / "01_broken.ipynb").exists()  # kept, so the learner can see the traceback
    assert not list(out.glob("*.part")) and not list(out.glob(".*.part"))


def test_only_parameters_a_lesson_declares_are_passed(tmp_path):
    lessons = tmp_path / "lessons"
    lessons.mkdir()
    _notebook(lessons / "00_no_data.ipynb", "assert 'DATA' not in globals()")
    runs = run_course(lessons, tmp_path / "out", fast=True, only=["00"], html_pages=False, progress=False)
    assert [r.status for r in runs] == ["passed"]


def test_lessons_run_unattended_show_no_widgets(tmp_path, monkeypatch):
    monkeypatch.delenv("LENET_COURSE_HEADLESS", raising=False)  # the test session sets it too
    lessons = tmp_path / "lessons"
    lessons.mkdir()
    _notebook(lessons / "00_widgets.ipynb", "from lenet_course.inspection import interactive_frontend\n"
                                            "assert not interactive_frontend()")
    runs = run_course(lessons, tmp_path / "out", html_pages=False, progress=False)
    assert [r.status for r in runs] == ["passed"]


def test_unknown_lesson_selection_and_empty_folder_are_clear_errors(tmp_path):
    with pytest.raises(CourseError, match="no lesson notebooks"):
        run_course(tmp_path, tmp_path / "out", progress=False)
    with pytest.raises(CourseError, match="no lesson matches 99"):
        run_course(None, tmp_path / "out", only=["99"], progress=False)


@pytest.mark.parametrize("params, name", [
    ({"SEED": "0"}, "SEED"),          # papermill -r passes strings: a str is not an int
    ({"SEED": -1}, "SEED"),           # out of range
    ({"DATA": "full"}, "DATA"),       # not one of the choices
    ({"FAST": 1}, "FAST"),            # an int is not a bool
])
def test_lesson_parameters_are_validated_in_the_notebook(tmp_path, params, name):
    with pytest.raises(PapermillExecutionError) as err:
        papermill.execute_notebook(str(LESSON_00), str(tmp_path / "out.ipynb"), parameters=params,
                                   kernel_name="python3", progress_bar=False, cwd=str(LESSON_00.parent))
    assert err.value.ename == "ParameterError"
    assert f"parameter {name}" in err.value.evalue


@pytest.mark.parametrize("lesson", lesson_notebooks(repo_root() / "notebooks"), ids=lambda p: p.stem)
def test_every_lesson_declares_the_common_parameters(lesson):
    # papermill silently skips a parameter line it cannot parse, and the runner then drops it
    declared = papermill.inspect_notebook(str(lesson))
    assert {"DATA", "DATA_DIR", "SEED", "FAST"} <= set(declared), sorted(declared)
