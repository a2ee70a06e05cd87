"""The course runner: execute every lesson in order with papermill and write a summary.

``lenet-course run`` calls :func:`run_course`. Each lesson ``notebooks/NN_*.ipynb`` is executed
into the output folder (default ``build/``) with the parameters it declares; the run stops at
the first failing notebook and names the notebook, the cell and the error. ``summary.json``
records each notebook's status and seconds, and ``index.html`` links the executed notebooks
rendered as HTML.

:func:`store_outputs` is the maintainers' tool: it executes a committed notebook in place, the
way the test suite's nbval run executes it (default parameters, the offline sample), and keeps
its metadata clean so the stored outputs are what nbval compares.
"""
from __future__ import annotations

import html
import json
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

from .files import atomic_write
from .progress import progress_bar

__all__ = ["NotebookRun", "CourseError", "repo_root", "lesson_notebooks", "run_course", "store_outputs"]

KERNEL = "python3"


class CourseError(RuntimeError):
    """A lesson failed, or the course folder is not usable."""


@dataclass
class NotebookRun:
    notebook: str          # file name, e.g. "00_setup_and_data.ipynb"
    status: str            # "passed", "failed" or "not run"
    seconds: float
    output: str | None     # the executed notebook, relative to the output folder
    error: str | None = None


def repo_root() -> Path:
    """The course checkout this package was installed from (the folder holding notebooks/)."""
    return Path(__file__).resolve().parent.parent


def lesson_notebooks(folder: str | os.PathLike) -> list[Path]:
    """The lessons ``NN_*.ipynb`` in ``folder``, in course order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CourseError(f"{folder}: no such folder; pass the course's notebooks/ folder")
    lessons = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))
    if not lessons:
        raise CourseError(f"{folder}: no lesson notebooks (NN_name.ipynb) found")
    return lessons


@contextmanager
def _environ(**values: str) -> Iterator[None]:
    """Set environment variables for the kernels started inside the block, then restore them."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _parameters_for(notebook: Path, wanted: dict[str, object]) -> dict[str, object]:
    """The subset of ``wanted`` that the notebook's ``parameters`` cell declares."""
    import papermill
    declared = papermill.inspect_notebook(str(notebook))
    return {k: v for k, v in wanted.items() if k in declared and v is not None}


def _render_html(executed: Path, target: Path) -> None:
    import nbformat
    from nbconvert import HTMLExporter
    body, _ = HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
    atomic_write(target, body)


def _write_index(output_dir: Path, runs: Sequence[NotebookRun], html_dir: str | None) -> None:
    rows = []
    for run in runs:
        name = html.escape(run.notebook)
        link = (f'<a href="{html_dir}/{html.escape(Path(run.notebook).stem)}.html">{name}</a>'
                if html_dir and run.status != "not run" else name)
        error = f"<br><code>{html.escape(run.error)}</code>" if run.error else ""
        rows.append(f"<tr><td>{link}</td><td class='{run.status.replace(' ', '-')}'>{run.status}{error}</td>"
                    f"<td>{run.seconds:.1f}</td></tr>")
    page = ("<!doctype html><meta charset='utf-8'><title>LeNet-5 course run</title>"
            "<style>body{font-family:sans-serif}td{padding:2px 12px}.passed{color:green}.failed{color:#b00}</style>"
            "<h1>LeNet-5, layer by layer: course run</h1><table><tr><th>lesson</th><th>status</th><th>seconds</th></tr>"
            + "".join(rows) + "</table>\n")
    atomic_write(output_dir / "index.html", page)


def run_course(notebooks_dir: str | os.PathLike | None = None, output_dir: str | os.PathLike = "build", *,
               fast: bool = False, data: str | None = None, data_dir: str | None = None,
               only: Sequence[str] = (), html_pages: bool = True, progress: bool = True) -> list[NotebookRun]:
    """Execute the lessons in order; return one :class:`NotebookRun` per lesson.

    ``fast`` is the CI profile: ``FAST=True`` and, unless ``data`` says otherwise, the offline
    sample. ``only`` restricts the run to lessons whose file name starts with one of its items
    (e.g. ``["00", "03"]``). Raises :class:`CourseError` after writing the summary when a lesson
    fails; the later lessons are listed as "not run".
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    lessons = lesson_notebooks(notebooks_dir if notebooks_dir is not None else repo_root() / "notebooks")
    if only:
        lessons = [p for p in lessons if p.name.startswith(tuple(only))]
        if not lessons:
            raise CourseError(f"no lesson matches {', '.join(only)}")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    wanted = {"FAST": fast, "DATA": data or ("sample" if fast else None), "DATA_DIR": data_dir}
    runs = [NotebookRun(p.name, "not run", 0.0, None) for p in lessons]
    failure = None
    # LENET_COURSE_HEADLESS: no interactive widgets in unattended runs (lenet_course.inspection.HEADLESS)
    with _environ(PYDEVD_DISABLE_FILE_VALIDATION="1", LENET_COURSE_HEADLESS="1"):
        bar = progress_bar(lessons, desc="course", unit="lesson", enabled=progress)
        for i, lesson in enumerate(bar):
            bar.set_postfix_str(lesson.name)
            out = output_dir / lesson.name
            start = time.perf_counter()
            try:
                papermill.execute_notebook(str(lesson), str(out), parameters=_parameters_for(lesson, wanted),
                                           kernel_name=KERNEL, cwd=str(lesson.parent), progress_bar=progress)
                runs[i].status = "passed"
            except PapermillExecutionError as exc:
                runs[i].status = "failed"
                runs[i].error = f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
                failure = f"{lesson} failed in cell [{exc.exec_count}]: {exc.ename}: {exc.evalue}"
            except Exception as exc:  # kernel died, timeout, unreadable notebook: the summary must say so
                runs[i].status = "failed"
                runs[i].error = f"{type(exc).__name__}: {exc}"
                failure = f"{lesson} failed: {type(exc).__name__}: {exc}"
            runs[i].seconds = round(time.perf_counter() - start, 1)
            runs[i].output = lesson.name if out.exists() else None
            if html_pages and out.exists():
                _render_html(out, output_dir / "html" / f"{lesson.stem}.html")
            if failure:
                break
    summary = {"fast": fast, "data": wanted["DATA"] or "auto", "total_seconds": round(sum(r.seconds for r in runs), 1),
               "notebooks": [asdict(r) for r in runs]}
    atomic_write(output_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    _write_index(output_dir, runs, "html" if html_pages else None)
    if failure:
        raise CourseError(f"{failure}\nThe executed notebook with the error is {output_dir / lesson.name}.")
    return runs


def store_outputs(notebook: str | os.PathLike, *, timeout: int = 600) -> None:
    """Execute ``notebook`` in place as the test suite's nbval run does, with clean metadata.

    Defaults of the parameters cell, the offline sample (``LENET_COURSE_DATA`` points at an empty
    folder so "auto" finds no full MNIST), no progress bars. The notebook is rewritten only when
    every cell ran; execution timestamps are not recorded.
    """
    import nbformat
    from nbclient import NotebookClient

    path = Path(notebook)
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as empty, _environ(LENET_COURSE_DATA=empty, TQDM_DISABLE="1",
                                                          PYDEVD_DISABLE_FILE_VALIDATION="1", LENET_COURSE_HEADLESS="1"):
        NotebookClient(nb, timeout=timeout, kernel_name=KERNEL, record_timing=False,
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    for key in ("papermill", "widgets"):
        nb.metadata.pop(key, None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("papermill", None)
    atomic_write(path, nbformat.writes(nb) + "\n")
