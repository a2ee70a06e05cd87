"""The lenet-course command: usage errors, doctor, data info."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lenet_course.cli import main


@pytest.mark.parametrize("argv", [[], ["bogus"], ["run", "--data", "imagenet"], ["data"], ["run", "--only"]])
def test_bad_arguments_give_a_usage_message_not_a_traceback(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "usage: lenet-course" in err and "Traceback" not in err


def test_console_script_is_installed():
    exe = Path(sys.executable).parent / "lenet-course"  # installed beside this Python by pip
    assert exe.is_file(), f"{exe} is missing: pip install -e ."
    result = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for command in ("doctor", "data", "run"):
        assert command in result.stdout


def test_doctor_reports_ok_lines_and_exit_status(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "[FAIL]" not in out
    for item in ("Python", "torch", "papermill", "Jupyter kernel", "offline sample", "device"):
        assert f"[OK]   {item}:" in out


def test_doctor_fails_on_a_missing_package(monkeypatch, capsys):
    import importlib.metadata as md
    real = md.version

    def version(name):
        if name == "papermill":
            raise md.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(md, "version", version)
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] papermill: missing" in out and "pip install" in out


def test_data_info_names_the_sample_when_full_mnist_is_absent(tmp_path, capsys):
    assert main(["data", "info", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "full MNIST not there" in out
    assert "sample: 4,000 training and 1,000 test digits" in out


def test_download_failure_is_an_error_message_and_exit_1(tmp_path, capsys):
    # Port 9 on the loopback interface: nothing listens, the connection is refused at once.
    code = main(["data", "download", "--data-dir", str(tmp_path), "--mirror", "http://127.0.0.1:9/"])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("lenet-course: error:") and "127.0.0.1:9" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_exercises_check_exit_status_and_json(tmp_path, capsys):
    import json
    from lenet_course.runner import repo_root
    assert main(["exercises", "check", str(repo_root() / "solutions" / "00_data.ipynb"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["all_passed"] is True
    assert {e["status"] for nb in report["notebooks"] for e in nb["exercises"]} == {"passed"}
    assert main(["exercises", "check", str(repo_root() / "exercises" / "00_data.ipynb")]) == 1
    assert "[TODO] 00.1" in capsys.readouterr().out
    broken = tmp_path / "00_broken.ipynb"
    broken.write_text("{not json")
    assert main(["exercises", "check", str(broken)]) == 1
    err = capsys.readouterr().err
    assert str(broken) in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [
    ["train", "--json", "x.json", "--epochs", "0"],
    ["train", "--json", "x.json", "--epochs", "two"],
    ["train", "--json", "x.json", "--seed", "-1"],
    ["train", "--json", "x.json", "--variant", "lenet1"],
    ["train", "--epochs", "1"],                      # --json is required
    ["train", "--json", "x.json", "--resume"],       # --resume without --checkpoint
    ["exercises", "check", "nb.ipynb", "--timeout", "0"],
])
def test_bad_train_arguments_give_a_usage_message(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "usage: lenet-course" in err and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_train_on_a_missing_gpu_is_an_error_message(tmp_path, capsys):
    assert main(["train", "--data", "sample", "--epochs", "1", "--device", "cuda", "--json", str(tmp_path / "r.json")]) == 1
    err = capsys.readouterr().err
    assert "no CUDA GPU" in err and "Traceback" not in err


def test_train_writes_its_results_as_json(tmp_path, capsys):
    import json
    out = tmp_path / "result.json"
    assert main(["train", "--variant", "modern", "--data", "sample", "--epochs", "1", "--json", str(out),
                 "--checkpoint", str(tmp_path / "ckpt.pt")]) == 0
    result = json.loads(out.read_text())
    for key in ("variant", "epochs", "data_source", "device", "train_seconds", "train_images_per_second", "test_error"):
        assert key in result
    assert result["variant"] == "modern" and result["epochs"] == 1 and result["data_source"] == "sample"
    assert result["train_seconds"] > 0 and result["train_images_per_second"] > 0 and 0 <= result["test_error"] < 0.9
    assert (tmp_path / "ckpt.pt").exists()


def test_train_resume_from_a_corrupt_checkpoint_is_an_error_message(tmp_path, capsys):
    bad = tmp_path / "ckpt.pt"
    bad.write_bytes(b"\x00" * 100)
    code = main(["train", "--variant", "modern", "--data", "sample", "--epochs", "1", "--json",
                 str(tmp_path / "r.json"), "--checkpoint", str(bad), "--resume"])
    assert code == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "truncated or corrupt" in err and "Traceback" not in err
    assert not (tmp_path / "r.json").exists()
