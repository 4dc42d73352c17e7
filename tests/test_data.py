"""gc.data: IDX reading, dataset lookup, checksummed downloads (file:// only, no network), minibatches."""

import gzip
import hashlib
import os

import numpy as np
import pytest

import graphc as gc
from graphc import data


# ---------------------------------------------------------------- IDX

@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, dtype, suffix):
    a = (np.arange(60).reshape(3, 4, 5) - 20).astype(dtype) * (1.5 if np.dtype(dtype).kind == "f" else 1)
    a = a.astype(dtype)
    path = tmp_path / f"a.idx{suffix}"
    data.write_idx(path, a)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    b = data.read_idx(path)
    assert b.dtype == np.dtype(dtype).newbyteorder("=") and b.shape == a.shape
    np.testing.assert_array_equal(a, b)


def test_idx_reads_hand_written_big_endian_bytes(tmp_path):
    raw = bytes([0, 0, 0x0C, 2]) + (2).to_bytes(4, "big") + (2).to_bytes(4, "big")
    raw += b"".join(v.to_bytes(4, "big", signed=True) for v in (1, -2, 70000, 3))
    p = tmp_path / "x.idx"
    p.write_bytes(raw)
    np.testing.assert_array_equal(data.read_idx(p), [[1, -2], [70000, 3]])
    gz = tmp_path / "x.idx.gz"
    gz.write_bytes(gzip.compress(raw))
    np.testing.assert_array_equal(data.read_idx(gz), [[1, -2], [70000, 3]])


def test_idx_errors(tmp_path):
    p = tmp_path / "bad"
    p.write_bytes(b"\x01\x02\x08\x01")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(p)
    p.write_bytes(bytes([0, 0, 0x08, 1]) + (10).to_bytes(4, "big") + b"12345")
    with pytest.raises(ValueError, match="truncated"):
        data.read_idx(p)
    p.write_bytes(bytes([0, 0, 0x07, 1]) + (1).to_bytes(4, "big") + b"1")
    with pytest.raises(ValueError, match="element type"):
        data.read_idx(p)
    good = gzip.compress(bytes([0, 0, 0x08, 1]) + (1000).to_bytes(4, "big") + bytes(1000))
    p.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="damaged gzip"):
        data.read_idx(p)


# ---------------------------------------------------------------- dataset lookup

def _fake_dataset(folder, split="test", n=6, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    img_stem, lab_stem = data.FILES[split]
    ext = ".gz" if gz else ""
    images = np.arange(n * 28 * 28, dtype=np.int64).reshape(n, 28, 28).astype(np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    data.write_idx(folder / (img_stem + ext), images)
    data.write_idx(folder / (lab_stem + ext), labels)
    return images, labels


def test_load_from_a_folder_flatten_normalize(tmp_path):
    images, labels = _fake_dataset(tmp_path / "m", gz=False)
    x, y = data.load_mnist("test", folder=tmp_path / "m")
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)
    xf, yf = data.load_mnist("test", folder=tmp_path / "m", flatten=True, normalize=True)
    assert xf.shape == (6, 784) and xf.dtype == np.float32 and yf.dtype == np.int64
    np.testing.assert_allclose(xf, images.reshape(6, -1) / 255.0, rtol=1e-6)


def test_env_var_folder_and_not_found_message(tmp_path, monkeypatch):
    _fake_dataset(tmp_path / "fm", split="train")
    monkeypatch.setenv("GRAPHC_FASHION_MNIST_DIR", str(tmp_path / "fm"))
    monkeypatch.setenv("GRAPHC_DATA_DIR", str(tmp_path / "cache"))
    x, y = data.load_fashion_mnist("train")
    assert x.shape == (6, 28, 28)
    with pytest.raises(data.DatasetNotFoundError, match="apt-get install dataset-fashion-mnist") as e:
        data.find_dataset("fashion-mnist", "test", folder=tmp_path / "empty")
    assert "t10k-images-idx3-ubyte" in str(e.value)
    with pytest.raises(ValueError, match="split"):
        data.find_dataset("mnist", "validation")


# ---------------------------------------------------------------- real data (skipped when absent)

def _real(name, split):
    try:
        return data.find_dataset(name, split)
    except data.DatasetNotFoundError as e:
        pytest.skip(f"{name} {split} not installed here: {e}")


def test_real_mnist_test_set_is_the_published_one():
    img, lab = _real("mnist", "test")
    if img.name.endswith(".gz"):  # the original downloads: byte-identical
        assert data.sha256_file(img) == data.CHECKSUMS["mnist"]["t10k-images-idx3-ubyte.gz"]
        assert data.sha256_file(lab) == data.CHECKSUMS["mnist"]["t10k-labels-idx1-ubyte.gz"]
    x, y = data.load_mnist("test")
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8 and y.shape == (10000,)
    np.testing.assert_array_equal(y[:10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])
    np.testing.assert_array_equal(np.bincount(y), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])


def test_real_fashion_mnist_shapes_and_balance():
    img, lab = _real("fashion-mnist", "test")
    _real("fashion-mnist", "train")
    x = data.read_idx(img)
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(data.read_idx(lab)), [1000] * 10)
    _, train_lab = data.find_dataset("fashion-mnist", "train")
    np.testing.assert_array_equal(np.bincount(data.read_idx(train_lab)), [6000] * 10)


# ---------------------------------------------------------------- checksummed downloads (file:// URLs)

def test_fetch_file_verifies_and_renames(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"graphc" * 1000)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    dest = tmp_path / "cache" / "file.bin"
    out = data.fetch_file(src.as_uri(), dest, digest)
    assert out == dest and dest.read_bytes() == src.read_bytes()
    src.unlink()  # already there and verified: no second download
    assert data.fetch_file("file:///nonexistent/x", dest, digest) == dest


def test_fetch_file_rejects_a_wrong_checksum_and_leaves_nothing(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"tampered")
    dest = tmp_path / "cache" / "file.bin"
    with pytest.raises(data.ChecksumError, match="does not match"):
        data.fetch_file(src.as_uri(), dest, "0" * 64)
    assert not dest.exists()
    assert os.listdir(dest.parent) == []  # no temporary file left behind
    # a corrupted file already at dest is replaced by a verified download
    dest.write_bytes(b"corrupt")
    good = hashlib.sha256(b"tampered").hexdigest()
    data.fetch_file(src.as_uri(), dest, good)
    assert dest.read_bytes() == b"tampered"


def test_download_uses_the_checksum_table(tmp_path, monkeypatch):
    served = tmp_path / "served"
    _fake_dataset(served, split="test")
    table = {f.name: data.sha256_file(f) for f in served.iterdir()}
    monkeypatch.setitem(data.CHECKSUMS, "mnist", table)
    monkeypatch.setenv("GRAPHC_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("GRAPHC_MNIST_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setitem(data.URLS, "mnist", served.as_uri())
    monkeypatch.setattr(data, "_project_shared", lambda: tmp_path / "no-shared")
    with pytest.raises(data.DatasetNotFoundError):
        data.load_mnist("test")
    x, y = data.load_mnist("test", download=True)
    assert x.shape == (6, 28, 28)
    assert sorted(os.listdir(tmp_path / "cache" / "mnist")) == sorted(table)
    # a table entry that does not match what is served: refused
    monkeypatch.setitem(data.CHECKSUMS, "mnist", {**table, "t10k-labels-idx1-ubyte.gz": "f" * 64})
    with pytest.raises(data.ChecksumError):
        data.download("mnist", "test", tmp_path / "other")
    assert not (tmp_path / "other" / "t10k-labels-idx1-ubyte.gz").exists()


# ---------------------------------------------------------------- minibatches

def test_batches_cover_each_example_once_and_are_seeded():
    x = np.arange(10)
    y = np.arange(10) * 10
    b = data.Batches(x, y, batch_size=4, seed=1)
    assert len(b) == 3
    epoch1 = list(b)
    assert [len(xb) for xb, _ in epoch1] == [4, 4, 2]
    assert sorted(np.concatenate([xb for xb, _ in epoch1]).tolist()) == list(range(10))
    for xb, yb in epoch1:
        np.testing.assert_array_equal(yb, xb * 10)
    epoch2 = list(b)
    assert not all(np.array_equal(a[0], c[0]) for a, c in zip(epoch1, epoch2))  # reshuffled
    again = data.Batches(x, y, batch_size=4, seed=1)
    for a, c in zip(epoch1, list(again)):
        np.testing.assert_array_equal(a[0], c[0])


def test_batches_drop_last_and_no_shuffle():
    x = np.arange(10)
    b = data.Batches(x, batch_size=4, shuffle=False, drop_last=True)
    assert len(b) == 2
    assert [xb.tolist() for (xb,) in b] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert [xb.tolist() for (xb,) in data.batches(x, batch_size=6, shuffle=False)] == [list(range(6)),
                                                                                       [6, 7, 8, 9]]
    with pytest.raises(ValueError, match="length"):
        data.Batches(np.arange(3), np.arange(4))
    assert gc.data is data
