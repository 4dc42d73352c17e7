"""Data: IDX files, MNIST and Fashion-MNIST, checksummed downloads, seeded minibatches.

    images, labels = gc.data.load_mnist(split="test")           # uint8 [N, 28, 28], uint8 [N]
    x, y = gc.data.load_fashion_mnist(split="train", flatten=True, normalize=True)
    for xb, yb in gc.data.Batches(x, y, batch_size=128, seed=0, drop_last=True): ...

Where the files are looked for (the first folder holding both files of a
split wins):

* MNIST: ``folder`` if given, else ``$GRAPHC_MNIST_DIR``, the project's
  ``../shared/data/mnist`` (next to the repository; test set only), and the
  download cache ``<cache>/mnist``;
* Fashion-MNIST: ``folder``, else ``$GRAPHC_FASHION_MNIST_DIR``,
  ``/usr/share/datasets/fashion-mnist`` (Debian: ``apt-get install
  dataset-fashion-mnist``), and ``<cache>/fashion-mnist``.

``<cache>`` is ``$GRAPHC_DATA_DIR``, else ``$XDG_CACHE_HOME/graphc/datasets``,
else ``~/.cache/graphc/datasets``. Files may be gzipped (``.gz``) or not.
With ``download=True`` a missing dataset is fetched into the cache over
HTTPS and each file is checked against the published SHA-256 in
``CHECKSUMS`` before it is moved into place (a failed or corrupted download
never leaves a file under the final name).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

__all__ = [
    "read_idx", "write_idx", "load_mnist", "load_fashion_mnist", "load_dataset", "find_dataset",
    "download", "fetch_file", "sha256_file", "data_cache_dir", "DatasetNotFoundError", "ChecksumError",
    "Batches", "batches", "CHECKSUMS", "URLS", "FILES",
]


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are in none of the folders searched (the message lists them and how to get it)."""


class ChecksumError(OSError):
    """A downloaded file's SHA-256 differs from the expected one (the file was not kept)."""


# ================================================================ IDX format

# type byte -> big-endian numpy dtype (the IDX format of LeCun et al.)
_IDX_TYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B,
              np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}


def _read_bytes(path) -> bytes:
    with open(path, "rb") as f:
        head = f.read(2)
        f.seek(0)
        if head == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=f) as g:
                try:
                    return g.read()
                except (EOFError, OSError) as e:
                    raise ValueError(f"{path}: damaged gzip data ({e})") from None
        return f.read()


def read_idx(path) -> np.ndarray:
    """An IDX file (gzipped or not) as a numpy array in native byte order.

    Layout: two zero bytes, a type byte (0x08 uint8, 0x09 int8, 0x0B int16,
    0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions ``d``,
    ``d`` big-endian uint32 sizes, then the data, big-endian, row-major.
    """
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic {data[:4].hex() or 'empty'})")
    code, ndim = data[2], data[3]
    if code not in _IDX_TYPES:
        raise ValueError(f"{path}: unknown IDX element type 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dt = _IDX_TYPES[code]
    need = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    if len(data) - header != need:
        raise ValueError(f"{path}: IDX data is {len(data) - header} bytes, but shape {shape} of {dt.name} "
                         f"needs {need} (truncated or corrupted file)")
    arr = np.frombuffer(data, dtype=dt, offset=header, count=need // dt.itemsize).reshape(shape)
    return arr.astype(dt.newbyteorder("="), copy=True)


def write_idx(path, array, compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file (gzipped when ``compress`` or when the path ends in ``.gz``)."""
    a = np.asarray(array)
    code = _IDX_CODES.get(a.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"IDX cannot store {a.dtype}")
    head = bytes([0, 0, code, a.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in a.shape)
    body = a.astype(a.dtype.newbyteorder(">"), copy=False).tobytes()
    compress = str(path).endswith(".gz") if compress is None else compress
    opener = gzip.open if compress else open
    with opener(path, "wb") as f:
        f.write(head + body)


# ================================================================ the datasets

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# the published SHA-256 of each original .gz download
CHECKSUMS = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
}

URLS = {
    "mnist": "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}

_HOW_TO_GET = {
    "mnist": "MNIST's test set is kept in the project's shared/data/mnist; elsewhere set $GRAPHC_MNIST_DIR "
             "to a folder with the IDX files, or call with download=True (needs network access)",
    "fashion-mnist": "install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu: files go to "
                     "/usr/share/datasets/fashion-mnist), set $GRAPHC_FASHION_MNIST_DIR, or call with "
                     "download=True (needs network access)",
}


def data_cache_dir() -> Path:
    """Where downloads go: ``$GRAPHC_DATA_DIR``, else ``$XDG_CACHE_HOME/graphc/datasets``,
    else ``~/.cache/graphc/datasets``."""
    env = os.environ.get("GRAPHC_DATA_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "graphc" / "datasets"


def _project_shared() -> Path:
    """``../shared`` next to the repository this package is in (for an editable install)."""
    return Path(__file__).resolve().parent.parent.parent / "shared"


def _search_path(name: str) -> list[Path]:
    if name == "mnist":
        env = os.environ.get("GRAPHC_MNIST_DIR")
        fixed = [_project_shared() / "data" / "mnist"]
    elif name == "fashion-mnist":
        env = os.environ.get("GRAPHC_FASHION_MNIST_DIR")
        fixed = [Path("/usr/share/datasets/fashion-mnist")]
    else:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(CHECKSUMS)}")
    return ([Path(env)] if env else []) + fixed + [data_cache_dir() / name]


def _file_in(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def find_dataset(name: str, split: str = "test", folder=None) -> tuple[Path, Path]:
    """The (images, labels) files of ``split`` ("train" or "test") of ``name``
    ("mnist" or "fashion-mnist"); raises ``DatasetNotFoundError`` listing the folders searched."""
    if split not in FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folders = [Path(folder)] if folder is not None else _search_path(name)
    for f in folders:
        found = [_file_in(f, stem) for stem in FILES[split]]
        if all(found):
            return found[0], found[1]
    names = " and ".join(f"{s}[.gz]" for s in FILES[split])
    raise DatasetNotFoundError(f"{name} {split} set not found: looked for {names} in "
                               + ", ".join(str(f) for f in folders) + f". To get it: {_HOW_TO_GET[name]}.")


def load_dataset(name: str, split: str = "test", folder=None, download: bool = False, flatten: bool = False,
                 normalize: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` of one split: uint8 ``[N, 28, 28]`` and uint8 ``[N]`` as stored, or with
    ``flatten`` ``[N, 784]`` and with ``normalize`` float32 in [0, 1] (labels then int64)."""
    try:
        img_path, lab_path = find_dataset(name, split, folder)
    except DatasetNotFoundError:
        if not download:
            raise
        target = Path(folder) if folder is not None else data_cache_dir() / name
        _download_files(name, split, target)
        img_path, lab_path = find_dataset(name, split, target)
    images, labels = read_idx(img_path), read_idx(lab_path)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"{name} {split}: images {images.shape} and labels {labels.shape} do not match")
    if flatten:
        images = images.reshape(images.shape[0], -1)
    if normalize:
        images = images.astype(np.float32) / np.float32(255.0)
        labels = labels.astype(np.int64)
    return images, labels


def load_mnist(split: str = "test", folder=None, download: bool = False, flatten: bool = False,
               normalize: bool = False):
    """MNIST digits (see ``load_dataset``). The project keeps only the 10k test set
    (its protocol: train on the first 8,000, test on the last 2,000)."""
    return load_dataset("mnist", split, folder, download, flatten, normalize)


def load_fashion_mnist(split: str = "train", folder=None, download: bool = False, flatten: bool = False,
                       normalize: bool = False):
    """Fashion-MNIST (60k train / 10k test, 10 clothing classes; see ``load_dataset``)."""
    return load_dataset("fashion-mnist", split, folder, download, flatten, normalize)


# ================================================================ downloads

def sha256_file(path, chunk: int = 1 << 20) -> str:
    """The SHA-256 of a file, as hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def fetch_file(url: str, dest, sha256: str, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` if ``dest`` is not already there with the right SHA-256.

    The bytes go to a temporary file in ``dest``'s folder while being hashed;
    only if the hash matches is it renamed (``os.replace``, atomic) to
    ``dest``. On a mismatch the temporary file is removed and
    ``ChecksumError`` names both hashes. Any URL urllib opens works
    (``https://``, ``file://``).
    """
    import urllib.request  # here, not at the top: it costs ~20 ms, and only a download needs it

    dest = Path(dest)
    want = sha256.lower()
    if dest.is_file() and sha256_file(dest) == want:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310
            while True:
                block = resp.read(1 << 20)
                if not block:
                    break
                h.update(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        got = h.hexdigest()
        if got != want:
            raise ChecksumError(f"{url}: SHA-256 {got} does not match the expected {want}; the download was "
                                "discarded (a damaged or changed file)")
        os.replace(tmp, dest)
        tmp = None
        return dest
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def download(name: str, split: str | None = None, folder=None, base_url: str | None = None) -> Path:
    """Fetch the files of ``name`` (both splits, or one) into ``folder`` (default: the cache),
    each verified against ``CHECKSUMS``; returns the folder."""
    if name not in CHECKSUMS:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(CHECKSUMS)}")
    folder = Path(folder) if folder is not None else data_cache_dir() / name
    base = base_url if base_url is not None else URLS[name]
    splits = [split] if split is not None else list(FILES)
    for s in splits:
        for stem in FILES[s]:
            fname = f"{stem}.gz"
            fetch_file(base.rstrip("/") + "/" + fname, folder / fname, CHECKSUMS[name][fname])
    return folder


_download_files = download  # (load_dataset's ``download`` argument shadows the function)


# ================================================================ minibatches

class Batches:
    """Seeded minibatches of one or more arrays sharing their first axis.

    Iterating gives one epoch of tuples ``(xb, yb, ...)``; each new epoch is
    shuffled with the next permutation of a generator seeded once with
    ``seed`` (so a run is reproducible, and epochs differ). ``drop_last``
    skips a final partial batch (compiled steps have fixed shapes); without
    it the last batch is smaller. ``len()`` is the number of batches per epoch.
    """

    def __init__(self, *arrays, batch_size: int = 128, shuffle: bool = True, seed=0, drop_last: bool = False):
        if not arrays:
            raise ValueError("Batches needs at least one array")
        n = len(arrays[0])
        for a in arrays:
            if len(a) != n:
                raise ValueError(f"arrays differ in length: {[len(a) for a in arrays]}")
        if batch_size <= 0:
            raise ValueError("batch_size must be positive")
        self.arrays = [np.asarray(a) for a in arrays]
        self.n, self.batch_size, self.shuffle, self.drop_last = n, int(batch_size), shuffle, drop_last
        self.rng = np.random.default_rng(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[tuple]:
        order = self.rng.permutation(self.n) if self.shuffle else None
        self.epoch += 1
        stop = (self.n // self.batch_size) * self.batch_size if self.drop_last else self.n
        for start in range(0, stop, self.batch_size):
            end = min(start + self.batch_size, self.n)
            if order is None:
                yield tuple(a[start:end] for a in self.arrays)
            else:
                idx = order[start:end]
                yield tuple(a[idx] for a in self.arrays)


def batches(*arrays, batch_size: int = 128, shuffle: bool = True, seed=0, drop_last: bool = False):
    """One epoch of ``Batches`` (a generator)."""
    return iter(Batches(*arrays, batch_size=batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last))
