"""The pretrained weights shipped in lenet_course/weights/: integrity, metadata, accuracy."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from lenet_course import models
from lenet_course.data import load_mnist
from lenet_course.models import WeightsError, load_pretrained, predict, pretrained_info

# The bar on the official test set: the paper's 0.95% for its network, 0.8% for the modern one.
TARGETS = {"paper": 0.0095, "modern": 0.0080}


@pytest.mark.parametrize("variant", sorted(TARGETS))
def test_manifest_records_full_mnist_training_and_the_target_error(variant):
    info = pretrained_info(variant)
    assert info["data"] == "mnist" and info["train_size"] == 60_000 and info["test_size"] == 10_000
    assert info["test_error"] <= TARGETS[variant]
    assert len(info["sha256"]) == 64 and info["command"].startswith("lenet-course train")


@pytest.mark.parametrize("variant", sorted(TARGETS))
def test_shipped_weights_classify_the_sample(variant):
    # The sample's 5,000 digits come from the official training set the weights were trained on.
    data = load_mnist("sample", verbose=False)
    model = load_pretrained(variant)
    assert not model.training
    images = np.concatenate([data.train_images, data.test_images])
    labels = np.concatenate([data.train_labels, data.test_labels])
    error = float((predict(model, images) != labels).mean())
    assert error < 0.01, f"{variant}: {error:.2%} of the sample misclassified"


def test_tampered_weights_fail_the_sha256_check(tmp_path, monkeypatch):
    shutil.copytree(models.WEIGHTS_DIR, tmp_path / "weights")
    monkeypatch.setattr(models, "WEIGHTS_DIR", tmp_path / "weights")
    path = tmp_path / "weights" / pretrained_info("paper")["file"]
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    path.write_bytes(bytes(blob))
    with pytest.raises(WeightsError, match="SHA-256") as err:
        load_pretrained("paper")
    assert str(path) in str(err.value)
    load_pretrained("modern")  # the other file is untouched and still loads


def test_missing_weights_and_unknown_variants_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="available: modern, paper"):
        pretrained_info("lenet1")
    monkeypatch.setattr(models, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(WeightsError, match="manifest"):
        load_pretrained("paper")


def test_weights_are_plain_state_dicts():
    info = pretrained_info("modern")
    state = torch.load(models.WEIGHTS_DIR / info["file"], weights_only=True, map_location="cpu")
    assert set(state) == set(models.lenet5("modern").state_dict())


@pytest.mark.skipif(not os.environ.get("LENET_COURSE_FULL_MNIST"),
                    reason="set LENET_COURSE_FULL_MNIST to a folder with the four official MNIST files")
@pytest.mark.parametrize("variant", sorted(TARGETS))
def test_shipped_weights_on_the_official_test_set(variant):
    data = load_mnist("mnist", os.environ["LENET_COURSE_FULL_MNIST"], verbose=False)
    error = float((predict(load_pretrained(variant), data.test_images) != data.test_labels).mean())
    assert error == pytest.approx(pretrained_info(variant)["test_error"], abs=1e-4)
    assert error <= TARGETS[variant]
