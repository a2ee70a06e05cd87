"""Test-session setup and the fixtures shared by the test files.

At import time (before any test module imports ``lenet_course``) the whole session is isolated
from the user's machine:

* ``LENET_COURSE_DATA`` points at an empty temporary folder, so ``load_mnist("auto")`` and the
  notebooks pick the offline sample whatever is in ``~/.cache/lenet-course/mnist``;
* ``XDG_CACHE_HOME`` points at a temporary cache folder, so the sample's ``.npz`` cache is built
  once per session (about 2 s) and nothing is read from or written to the user's home;
* ``TQDM_DISABLE=1``, so progress bars stay out of test output, and ``LENET_COURSE_HEADLESS=1``,
  so lessons show no interactive widgets (notebook kernels started by later tests inherit all four).

The folder is removed when the interpreter exits. Fixtures: ``idx_bytes`` / ``write_idx`` (small
IDX files), ``fake_mnist`` / ``make_fake_mnist`` (four tiny IDX files under the official names
with a matching table of :class:`~lenet_course.data.MnistFile` entries carrying their real MD5s),
``http_server`` (a configurable HTTP server on 127.0.0.1), ``only_loopback`` and ``no_network``
(guards that make any other connection attempt fail; :func:`block_network` for wider scopes),
``ns`` (a fresh copy of the test module's ``solved`` namespace, for the exercise-check tests; their
helpers are in exercise_testing.py).
"""
from __future__ import annotations

import atexit
import gzip
import hashlib
import http.server
import os
import shutil
import socket
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # plain `pytest` (not `python -m pytest`) without an installed package
    sys.path.insert(0, str(ROOT))

# --------------------------------------------------------------------------------------------
# Session isolation: set before lenet_course (or a notebook kernel) ever reads the environment
# --------------------------------------------------------------------------------------------

SESSION_DIR = Path(tempfile.mkdtemp(prefix="lenet-course-tests-"))
SESSION_DATA_DIR = SESSION_DIR / "data"    # stays empty: "auto" means the sample
SESSION_CACHE_DIR = SESSION_DIR / "cache"  # XDG_CACHE_HOME for the session
SESSION_DATA_DIR.mkdir()
SESSION_CACHE_DIR.mkdir()
os.environ["LENET_COURSE_DATA"] = str(SESSION_DATA_DIR)
os.environ["XDG_CACHE_HOME"] = str(SESSION_CACHE_DIR)
os.environ["TQDM_DISABLE"] = "1"
os.environ["LENET_COURSE_HEADLESS"] = "1"  # lessons draw static figures, no widgets
atexit.register(shutil.rmtree, SESSION_DIR, ignore_errors=True)

from lenet_course.data import MnistFile  # noqa: E402  (after the environment is set)

# --------------------------------------------------------------------------------------------
# IDX files
# --------------------------------------------------------------------------------------------

_IDX_CODES = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype(">i2"): 0x0B,
              np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX encoding of ``array``: magic 0x0000 | type | ndim, big-endian uint32 dims, data."""
    array = np.asarray(array)
    big = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    code = _IDX_CODES[np.dtype(big)]
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + np.ascontiguousarray(array, dtype=big).tobytes()


def gz(data: bytes) -> bytes:
    """gzip with a fixed timestamp, so the same data always gives the same bytes (and MD5)."""
    return gzip.compress(data, mtime=0)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def idx_bytes() -> Callable[[np.ndarray], bytes]:
    """``idx_bytes(array) -> bytes``: the IDX encoding of an array."""
    return encode_idx


@pytest.fixture
def write_idx() -> Callable[..., Path]:
    """``write_idx(path, array, gzipped=None) -> path``: write a valid IDX file, gzipped when
    ``gzipped`` (default: when the name ends in ``.gz``)."""
    def write(path: str | os.PathLike, array: np.ndarray, gzipped: bool | None = None) -> Path:
        path = Path(path)
        data = encode_idx(array)
        if gzipped if gzipped is not None else path.suffix == ".gz":
            data = gz(data)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path
    return write


# --------------------------------------------------------------------------------------------
# A fake MNIST: four tiny files under the official names, with their real checksums
# --------------------------------------------------------------------------------------------

OFFICIAL = (("train-images-idx3-ubyte", "train", "images"), ("train-labels-idx1-ubyte", "train", "labels"),
            ("t10k-images-idx3-ubyte", "test", "images"), ("t10k-labels-idx1-ubyte", "test", "labels"))


@dataclass(frozen=True)
class FakeMnist:
    """Four tiny IDX files and the ``MnistFile`` table whose MD5s match them.

    ``raw`` / ``gz`` hold each file's bytes (uncompressed / as a mirror would serve them),
    ``arrays`` the decoded content; all three are keyed by the official name (no ``.gz``).
    """
    folder: Path
    files: tuple[MnistFile, ...]
    arrays: dict[str, np.ndarray]
    raw: dict[str, bytes]
    gz: dict[str, bytes]
    compressed: bool = True

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.files]

    def path(self, name: str) -> Path:
        """Where ``name`` was written in :attr:`folder`."""
        return self.folder / (f"{name}.gz" if self.compressed else name)

    def write(self, folder: str | os.PathLike, compressed: bool = True, names=None) -> Path:
        """Copy the files (all, or ``names``) into another folder, as ``.gz`` or raw."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name in names if names is not None else self.names:
            if compressed:
                (folder / f"{name}.gz").write_bytes(self.gz[name])
            else:
                (folder / name).write_bytes(self.raw[name])
        return folder


def build_fake_mnist(folder: str | os.PathLike, *, n_train: int = 20, n_test: int = 10,
                     compressed: bool = True, seed: int = 0,
                     overrides: dict[str, np.ndarray] | None = None) -> FakeMnist:
    """Write a fake MNIST into ``folder``; ``overrides`` replaces the array of any official name."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": ((np.arange(n_test) * 3 + 1) % 10).astype(np.uint8),
    }
    arrays.update(overrides or {})
    raw = {name: encode_idx(a) for name, a in arrays.items()}
    zipped = {name: gz(data) for name, data in raw.items()}
    files = tuple(MnistFile(name, md5(raw[name]), md5(zipped[name]), split, kind) for name, split, kind in OFFICIAL)
    fake = FakeMnist(Path(folder), files, arrays, raw, zipped, compressed)
    fake.write(folder, compressed=compressed)
    return fake


@pytest.fixture
def make_fake_mnist(tmp_path) -> Callable[..., FakeMnist]:
    """``make_fake_mnist(folder=None, **options)``: a fake MNIST (see :func:`build_fake_mnist`)."""
    def make(folder: str | os.PathLike | None = None, **options) -> FakeMnist:
        return build_fake_mnist(folder if folder is not None else tmp_path / "fake-mnist", **options)
    return make


@pytest.fixture
def fake_mnist(make_fake_mnist) -> FakeMnist:
    """20 training and 10 test digits as ``.gz`` files in ``tmp_path/fake-mnist``."""
    return make_fake_mnist()


# --------------------------------------------------------------------------------------------
# Exercise checks
# --------------------------------------------------------------------------------------------

@pytest.fixture
def ns(solved: dict) -> dict:
    """A fresh copy of ``solved``, the namespace of a solution notebook that the test module defines
    as a module-scoped fixture: a test may change its copy freely."""
    return dict(solved)


# --------------------------------------------------------------------------------------------
# Network guards
# --------------------------------------------------------------------------------------------

def _is_loopback(address) -> bool:
    return isinstance(address, tuple) and address[:1] == ("127.0.0.1",)


def block_network(monkeypatch: pytest.MonkeyPatch, allow_loopback: bool) -> list:
    """Make every IP connection and name lookup raise, except to 127.0.0.1 when ``allow_loopback``;
    without loopback ``urllib.request.urlopen`` raises too. Returns the list of refused attempts.

    Works with any ``MonkeyPatch`` (``pytest.MonkeyPatch.context()`` in wider-scoped fixtures).
    """
    attempts: list = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def refuse(what):
        attempts.append(what)
        raise ConnectionRefusedError(f"the tests allow no network access (attempted {what!r})")

    def allowed(sock, address) -> bool:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return True  # Unix sockets are local
        return allow_loopback and _is_loopback(address)

    def connect(self, address):
        return real_connect(self, address) if allowed(self, address) else refuse(address)

    def connect_ex(self, address):
        return real_connect_ex(self, address) if allowed(self, address) else refuse(address)

    def getaddrinfo(host, *args, **kwargs):
        if allow_loopback and host in ("127.0.0.1", b"127.0.0.1"):
            return real_getaddrinfo(host, *args, **kwargs)
        return refuse(host)

    def urlopen(url, *args, **kwargs):
        attempts.append(getattr(url, "full_url", url))
        raise urllib.error.URLError(f"the tests allow no network access (attempted {url!r})")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    if not allow_loopback:
        monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return attempts


@pytest.fixture
def only_loopback(monkeypatch) -> list:
    """Only 127.0.0.1 can be reached; the list records every refused attempt."""
    return block_network(monkeypatch, allow_loopback=True)


@pytest.fixture
def no_network(monkeypatch) -> list:
    """No connection at all (loopback included), and ``urllib.request.urlopen`` raises."""
    return block_network(monkeypatch, allow_loopback=False)


# --------------------------------------------------------------------------------------------
# A local HTTP server whose answer for each path is configurable
# --------------------------------------------------------------------------------------------

@dataclass
class Route:
    kind: str                 # "bytes", "status", "html", "drop", "hang" or "garbage"
    body: bytes = b""
    status: int = 200
    after: int = 0            # "drop": bytes actually sent before the connection is closed
    seconds: float = 0.0      # "hang": how long to wait before answering


HTML_ERROR_PAGE = (b"<!DOCTYPE html>\n<html><head><title>Service Unavailable</title></head>\n"
                   b"<body><h1>503 Service Unavailable</h1><p>Please try again later.</p></body></html>\n")


@dataclass
class LocalServer:
    """Answers GET requests by path; unknown paths get 404. ``requests`` lists the paths asked for."""
    url: str = ""
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @staticmethod
    def _key(path: str) -> str:
        return "/" + path.lstrip("/")

    def mirror(self, name: str) -> str:
        """The base URL of a mirror served under ``/name/``."""
        return f"{self.url}{name}/"

    def serve(self, path: str, body: bytes) -> None:
        """200 with ``body`` (Content-Length set)."""
        self.routes[self._key(path)] = Route("bytes", body)

    def fail(self, path: str, status: int = 404) -> None:
        """An HTTP error status (404 unless told)."""
        self.routes[self._key(path)] = Route("status", status=status)

    def html(self, path: str, status: int = 200, body: bytes = HTML_ERROR_PAGE) -> None:
        """An HTML error page, by default with status 200 (as captive portals and some CDNs do)."""
        self.routes[self._key(path)] = Route("html", body, status=status)

    def drop(self, path: str, body: bytes, after: int | None = None) -> None:
        """Announce ``len(body)`` bytes, send the first ``after`` (half by default), then close."""
        self.routes[self._key(path)] = Route("drop", body, after=len(body) // 2 if after is None else after)

    def hang(self, path: str, seconds: float, body: bytes = b"") -> None:
        """Wait ``seconds`` before answering (for client timeouts)."""
        self.routes[self._key(path)] = Route("hang", body, seconds=seconds)

    def garbage(self, path: str) -> None:
        """Answer with something that is not HTTP at all, then close."""
        self.routes[self._key(path)] = Route("garbage")

    def serve_files(self, mirror: str, files: dict[str, bytes], how: str = "serve", **options) -> str:
        """Configure ``/mirror/<name>`` for each file (``how``: serve, fail, html, drop, hang, garbage)."""
        for name, body in files.items():
            path = f"{mirror}/{name}"
            if how in ("serve", "drop", "hang"):
                getattr(self, how)(path, body, **options)
            else:
                getattr(self, how)(path, **options)
        return self.mirror(mirror)

    def count(self, prefix: str = "/") -> int:
        """How many requests asked for a path starting with ``prefix``."""
        prefix = self._key(prefix)
        with self.lock:
            return sum(p.startswith(prefix) for p in self.requests)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: a close is the end of the reply

    def log_message(self, format, *args):  # keep test output clean
        pass

    def do_GET(self):
        owner: LocalServer = self.server.owner  # type: ignore[attr-defined]
        with owner.lock:
            owner.requests.append(self.path)
        route = owner.routes.get(self.path)
        try:
            if route is None:
                self.send_error(404, "Not Found")
            elif route.kind == "status":
                self.send_error(route.status)
            elif route.kind in ("bytes", "html", "hang"):
                if route.kind == "hang" and owner.stop.wait(route.seconds):
                    return  # the server is shutting down
                self.send_response(route.status)
                self.send_header("Content-Type", "text/html; charset=utf-8" if route.kind == "html"
                                 else "application/octet-stream")
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                self.wfile.write(route.body)
            elif route.kind == "drop":
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                self.wfile.write(route.body[:route.after])
                self.wfile.flush()
                self.close_connection = True
            elif route.kind == "garbage":
                self.wfile.write(b"this is not an HTTP reply\r\n\r\n")
                self.close_connection = True
        except OSError:
            pass  # the client gave up (a timeout test): nothing to do


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request, client_address):  # no tracebacks on stderr for dropped clients
        pass


@pytest.fixture
def http_server(monkeypatch):
    """A :class:`LocalServer` on 127.0.0.1 (ephemeral port), shut down after the test.

    Proxy variables are cleared and urllib's cached opener reset, so requests go straight to it.
    """
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setattr(urllib.request, "_opener", None)  # urlopen builds a fresh one without proxies

    owner = LocalServer()
    server = _Server(("127.0.0.1", 0), _Handler)
    server.owner = owner  # type: ignore[attr-defined]
    owner.url = f"http://127.0.0.1:{server.server_address[1]}/"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield owner
    finally:
        owner.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
