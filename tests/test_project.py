"""Facts about the project itself: the environment files agree, CI runs the README, folders are documented."""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
CONDA_NAMES = {"pytorch": "torch"}  # conda-forge name -> PyPI name


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_environment_yml_matches_pyproject():
    project = _pyproject()["project"]
    wanted = {Requirement(r).name: str(Requirement(r).specifier)
              for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    conda = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict) or dep == "pip":
            continue
        name, spec = re.fullmatch(r"([A-Za-z0-9_.-]+)(.*)", dep).groups()
        conda[CONDA_NAMES.get(name, name)] = str(Requirement(f"x{spec}").specifier)
    assert conda.pop("python") == str(Requirement(f"x{project['requires-python']}").specifier)
    assert conda == wanted


def test_torch_range_keeps_the_cpu_wheel_and_the_safe_loader():
    torch_req = next(Requirement(r) for r in _pyproject()["project"]["dependencies"] if r.startswith("torch"))
    assert torch_req.specifier.contains("2.13.0") and torch_req.specifier.contains("2.10.0")
    assert not torch_req.specifier.contains("2.9.1")   # older torch.load has known CVEs
    assert not torch_req.specifier.contains("2.14.0")  # would pull a 5 GB CUDA build here


def _ci_lines():
    lines = [l.strip() for l in (ROOT / ".ci/run").read_text().splitlines()]
    return [l for l in lines if l and not l.startswith("#") and not l.startswith(("set ", "cd "))]


def test_ci_runs_the_readme_install_step_and_test_command_verbatim():
    install, test = _ci_lines()
    readme = (ROOT / "README.md").read_text()
    assert f"{install} && {test}" in readme, "the README's test command must be .ci/run's two lines"
    assert f"{install} && .venv/bin/lenet-course run" in readme, "the README's course command uses the same install"


def test_each_top_level_folder_has_a_readme_listing_its_files():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    folders: dict[str, set[str]] = {}
    for f in map(Path, tracked):
        if len(f.parts) > 1 and not f.parts[0].startswith("."):
            folders.setdefault(f.parts[0], set()).add(f.parts[1])
    assert {"lenet_course", "notebooks", "tests"} <= set(folders)
    for folder, files in sorted(folders.items()):
        assert "README.md" in files, f"{folder}/ has no README.md"
        readme = (ROOT / folder / "README.md").read_text()
        listed = lambda f: f"`{f}`" in readme or f"`{f}/`" in readme  # a sub-folder may be written `name/`
        missing = sorted(f for f in files - {"README.md"} if not listed(f))
        assert not missing, f"{folder}/README.md does not list {missing}"


def test_importing_the_package_changes_nothing_global():
    probe = """
import importlib, pkgutil, random, sys
import numpy as np, torch, matplotlib
before = (dict(matplotlib.rcParams), np.random.get_state()[1].tobytes(), torch.initial_seed(), random.getstate(),
          torch.get_default_dtype(), torch.get_num_threads())
import lenet_course
for m in pkgutil.walk_packages(lenet_course.__path__, "lenet_course."):
    importlib.import_module(m.name)
after = (dict(matplotlib.rcParams), np.random.get_state()[1].tobytes(), torch.initial_seed(), random.getstate(),
         torch.get_default_dtype(), torch.get_num_threads())
assert before == after, "importing lenet_course changed global state"
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "", f"importing lenet_course printed: {result.stdout!r}"
