"""lenet_course.data.download_mnist against a local HTTP server (conftest.py: http_server).

Every test runs behind the ``only_loopback`` guard: a connection to anything but 127.0.0.1 (the
real mirrors included) fails the test. The files are the tiny fake MNIST of conftest.py, and
``files=`` hands the downloader their checksums.
"""
from __future__ import annotations

import gzip
import os
import socket

import numpy as np
import pytest

import lenet_course.data as data
from lenet_course.data import DataError, download_mnist, load_mnist, read_idx

TIMEOUT = 2.0  # seconds; every answer comes from this machine


@pytest.fixture(autouse=True)
def _loopback_only(only_loopback):
    yield
    assert only_loopback == [], f"a test tried to reach the network: {only_loopback}"


def _download(folder, mirrors, fake, **options):
    return download_mnist(folder, mirrors, files=fake.files, timeout=options.pop("timeout", TIMEOUT),
                          progress=False, **options)


def _gz_files(fake) -> dict[str, bytes]:
    return {f"{name}.gz": fake.gz[name] for name in fake.names}


def _leftovers(folder) -> list[str]:
    """Temporary files left behind (the downloader writes ``.<name>.*.part`` next to the target)."""
    return sorted(p.name for p in folder.rglob("*") if ".part" in p.name) if folder.exists() else []


def _assert_complete(folder, fake):
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{name}.gz" for name in fake.names)
    for name in fake.names:
        assert (folder / f"{name}.gz").read_bytes() == fake.gz[name]
        np.testing.assert_array_equal(read_idx(folder / f"{name}.gz"), fake.arrays[name])


def test_download_success(http_server, fake_mnist, tmp_path, monkeypatch):
    mirror = http_server.serve_files("m1", _gz_files(fake_mnist))
    folder = tmp_path / "new" / "mnist"  # created on the way
    assert _download(folder, [mirror], fake_mnist) == folder
    _assert_complete(folder, fake_mnist)
    assert _leftovers(folder) == []
    assert http_server.count("/m1/") == 4
    # and the loader accepts what was downloaded
    monkeypatch.setattr(data, "MNIST_FILES", fake_mnist.files)
    mnist = load_mnist("mnist", data_dir=folder)
    np.testing.assert_array_equal(mnist.train_images, fake_mnist.arrays["train-images-idx3-ubyte"])


def test_download_goes_to_the_default_folder(http_server, fake_mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("LENET_COURSE_DATA", str(tmp_path / "env-folder"))
    mirror = http_server.serve_files("m1", _gz_files(fake_mnist))
    assert _download(None, [mirror.rstrip("/")], fake_mnist) == tmp_path / "env-folder"  # no trailing slash
    _assert_complete(tmp_path / "env-folder", fake_mnist)


def test_first_mirror_404_then_second_mirror(http_server, fake_mnist, tmp_path):
    # nothing configured under /m1/: every request there is a 404
    mirror2 = http_server.serve_files("m2", _gz_files(fake_mnist))
    folder = tmp_path / "mnist"
    _download(folder, [http_server.mirror("m1"), mirror2], fake_mnist)
    _assert_complete(folder, fake_mnist)
    assert http_server.count("/m1/") == 4 and http_server.count("/m2/") == 4
    assert _leftovers(folder) == []


def test_a_recompressed_copy_is_accepted_by_its_uncompressed_checksum(http_server, fake_mnist, tmp_path):
    recompressed = {f"{n}.gz": gzip.compress(fake_mnist.raw[n], mtime=123456789) for n in fake_mnist.names}
    assert recompressed["train-images-idx3-ubyte.gz"] != fake_mnist.gz["train-images-idx3-ubyte"]
    folder = tmp_path / "mnist"
    _download(folder, [http_server.serve_files("m1", recompressed)], fake_mnist)
    for name in fake_mnist.names:
        np.testing.assert_array_equal(read_idx(folder / f"{name}.gz"), fake_mnist.arrays[name])


def test_corrupted_payload_on_every_mirror(http_server, fake_mnist, make_fake_mnist, tmp_path):
    other = make_fake_mnist(tmp_path / "other", seed=1)  # valid gzip, valid IDX, wrong checksums
    mirrors = [http_server.serve_files(m, _gz_files(other)) for m in ("m1", "m2")]
    folder = tmp_path / "mnist"
    with pytest.raises(DataError) as info:
        _download(folder, mirrors, fake_mnist)
    message = str(info.value)
    target = folder / "train-images-idx3-ubyte.gz"
    assert str(target) in message
    for mirror in mirrors:
        assert f"{mirror}train-images-idx3-ubyte.gz: checksum mismatch" in message
    assert not target.exists() and sorted(os.listdir(folder)) == []  # no final file, no temp file


def test_every_mirror_404_lists_each_failure(http_server, fake_mnist, tmp_path):
    mirrors = [http_server.mirror("m1"), http_server.mirror("m2"), http_server.mirror("m3")]
    http_server.serve_files("m3", {"train-images-idx3-ubyte.gz": b""}, how="fail", status=503)
    folder = tmp_path / "mnist"
    with pytest.raises(DataError, match="could not download") as info:
        _download(folder, mirrors, fake_mnist)
    lines = str(info.value).splitlines()
    assert f"  {mirrors[0]}train-images-idx3-ubyte.gz: HTTP 404 Not Found" in lines
    assert f"  {mirrors[1]}train-images-idx3-ubyte.gz: HTTP 404 Not Found" in lines
    assert any(line.startswith(f"  {mirrors[2]}train-images-idx3-ubyte.gz: HTTP 503") for line in lines)
    assert _leftovers(folder) == [] and not (folder / "train-images-idx3-ubyte.gz").exists()


def test_connection_dropped_mid_file_goes_to_the_next_mirror(http_server, fake_mnist, tmp_path):
    mirror1 = http_server.serve_files("m1", _gz_files(fake_mnist), how="drop")
    mirror2 = http_server.serve_files("m2", _gz_files(fake_mnist))
    folder = tmp_path / "mnist"
    _download(folder, [mirror1, mirror2], fake_mnist)
    _assert_complete(folder, fake_mnist)
    assert http_server.count("/m1/") == 4 and _leftovers(folder) == []


def test_connection_dropped_mid_file_everywhere(http_server, fake_mnist, tmp_path):
    size = len(fake_mnist.gz["train-images-idx3-ubyte"])
    mirror = http_server.serve_files("m1", _gz_files(fake_mnist), how="drop", after=100)
    folder = tmp_path / "mnist"
    with pytest.raises(DataError) as info:
        _download(folder, [mirror], fake_mnist)
    assert f"connection closed after 100 of {size:,} bytes" in str(info.value)
    assert os.listdir(folder) == []  # the partial download never looks complete


@pytest.mark.parametrize("status", [200, 503])
def test_an_html_page_is_rejected(http_server, fake_mnist, tmp_path, status):
    mirror1 = http_server.serve_files("m1", _gz_files(fake_mnist), how="html", status=status)
    folder = tmp_path / "mnist"
    with pytest.raises(DataError) as info:
        _download(folder, [mirror1], fake_mnist)
    assert ("not valid gzip" if status == 200 else "HTTP 503") in str(info.value)
    assert os.listdir(folder) == []
    # with a good second mirror the download succeeds
    _download(folder, [mirror1, http_server.serve_files("m2", _gz_files(fake_mnist))], fake_mnist)
    _assert_complete(folder, fake_mnist)


def test_a_reply_that_is_not_http_goes_to_the_next_mirror(http_server, fake_mnist, tmp_path):
    mirror1 = http_server.serve_files("m1", _gz_files(fake_mnist), how="garbage")
    mirror2 = http_server.serve_files("m2", _gz_files(fake_mnist))
    folder = tmp_path / "mnist"
    _download(folder, [mirror1, mirror2], fake_mnist)
    _assert_complete(folder, fake_mnist)


def test_a_refused_connection_goes_to_the_next_mirror(http_server, fake_mnist, tmp_path):
    with socket.socket() as s:  # a port on which nothing listens
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/"
    folder = tmp_path / "mnist"
    _download(folder, [closed, http_server.serve_files("m2", _gz_files(fake_mnist))], fake_mnist)
    _assert_complete(folder, fake_mnist)


def test_a_mirror_that_hangs_times_out(http_server, fake_mnist, tmp_path):
    files = _gz_files(fake_mnist)
    mirror1 = http_server.serve_files("m1", files)
    http_server.hang("m1/train-images-idx3-ubyte.gz", seconds=10, body=files["train-images-idx3-ubyte.gz"])
    mirror2 = http_server.serve_files("m2", files)
    folder = tmp_path / "mnist"
    _download(folder, [mirror1, mirror2], fake_mnist, timeout=0.3)
    _assert_complete(folder, fake_mnist)
    assert http_server.count("/m2/") == 1  # only the file that timed out


def test_verified_files_are_not_downloaded_again(http_server, fake_mnist, tmp_path):
    mirror = http_server.serve_files("m1", _gz_files(fake_mnist))
    folder = fake_mnist.write(tmp_path / "mnist", names=fake_mnist.names[:2])
    _download(folder, [mirror], fake_mnist)
    assert http_server.count("/m1/") == 2
    assert http_server.count("/m1/train-") == 0  # the two train files were already there
    _assert_complete(folder, fake_mnist)
    _download(folder, [mirror], fake_mnist)
    assert http_server.count() == 2  # nothing new


GZ_GARBAGE = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + b"\xff" * 64


@pytest.mark.parametrize("damage", ["gzip header then garbage", "truncated", "html", "other content"])
def test_a_damaged_existing_file_is_downloaded_again(http_server, fake_mnist, make_fake_mnist, tmp_path, damage):
    name = "t10k-images-idx3-ubyte"
    folder = fake_mnist.write(tmp_path / "mnist")
    good = fake_mnist.gz[name]
    (folder / f"{name}.gz").write_bytes({
        "gzip header then garbage": GZ_GARBAGE,
        "truncated": good[: len(good) // 2],
        "html": b"<html><body>403 Forbidden</body></html>",
        "other content": make_fake_mnist(tmp_path / "other", seed=5).gz[name],
    }[damage])
    mirror = http_server.serve_files("m1", _gz_files(fake_mnist))
    _download(folder, [mirror], fake_mnist)
    assert http_server.count() == 1 and http_server.count(f"/m1/{name}.gz") == 1
    _assert_complete(folder, fake_mnist)


def test_no_mirrors_is_an_error(fake_mnist, tmp_path):
    with pytest.raises(ValueError, match="mirrors is empty"):
        _download(tmp_path, [], fake_mnist)
