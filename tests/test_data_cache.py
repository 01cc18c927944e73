"""The on-disk cache of decoded data: used when it verifies, rebuilt when anything about it does not."""

from __future__ import annotations

import numpy as np

from prunebench.datasets import cache


def _source(tmp_path, text="1,2,3\n4,5,6\n"):
    path = tmp_path / "source.csv"
    path.write_text(text)
    return path


def _decoder(path, calls):
    def decode():
        calls.append(1)
        rows = np.loadtxt(path, delimiter=",", dtype=np.int64)
        return {"images": rows.astype(np.uint8), "labels": rows[:, 0].copy()}

    return decode


def test_decoded_once_then_read_back_identical(tmp_path):
    source, calls = _source(tmp_path), []
    first = cache.cached_arrays("toy", source, _decoder(source, calls), tmp_path / "cache")
    second = cache.cached_arrays("toy", source, _decoder(source, calls), tmp_path / "cache")
    assert len(calls) == 1
    for name in first:
        assert second[name].dtype == first[name].dtype and np.array_equal(second[name], first[name])
    assert list((tmp_path / "cache").iterdir()) == [tmp_path / "cache" / "toy.npz"]  # no temporary left


def test_a_corrupt_or_stale_cache_is_rebuilt_not_trusted(tmp_path):
    source, calls = _source(tmp_path), []
    root = tmp_path / "cache"
    decode = _decoder(source, calls)
    expected = cache.cached_arrays("toy", source, decode, root)
    path = root / "toy.npz"
    intact = path.read_bytes()

    def check_rebuilt():
        before = len(calls)
        again = cache.cached_arrays("toy", source, decode, root)
        assert len(calls) == before + 1
        assert all(np.array_equal(again[n], expected[n]) for n in expected)
        assert cache._load(path, cache.file_digest(source)) is not None  # the rebuilt file verifies

    path.write_bytes(intact[: len(intact) // 2])  # truncated
    check_rebuilt()
    # One array altered, its container intact: only the arrays' digest can tell.
    with np.load(path) as stored:
        content = {n: stored[n] for n in stored.files}
    content["labels"] = content["labels"] + 1
    np.savez(path, **content)
    check_rebuilt()
    path.write_bytes(b"not a cache")
    check_rebuilt()
    source.write_text("7,8,9\n1,1,1\n")  # a new source: the old cache is stale
    expected = _decoder(source, [])()
    check_rebuilt()


def test_an_unwritable_cache_only_costs_the_decoding(tmp_path):
    source, calls = _source(tmp_path), []
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory should be")
    arrays = cache.cached_arrays("toy", source, _decoder(source, calls), blocker / "cache")
    assert len(calls) == 1 and arrays["images"].shape == (2, 3)


def test_the_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PRUNEBENCH_CACHE", str(tmp_path / "a"))
    assert cache.cache_root() == tmp_path / "a"
    monkeypatch.delenv("PRUNEBENCH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "b"))
    assert cache.cache_root() == tmp_path / "b" / "prunebench"
