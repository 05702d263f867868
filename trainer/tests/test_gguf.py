import os
import struct

import numpy as np
import pytest

from repotune_trainer import gguf
from repotune_trainer.gguf import GGUFError, GGUFReader, GGUFWriter, array, f32, i32, u32, u64
from repotune_trainer.quants import Q8_0, quantize_q8_0


def _writer():
    w = GGUFWriter()
    w.add("general.architecture", "llama")
    w.add("general.flag", True)
    w.add("some.u32", u32(7))
    w.add("some.i32", i32(-3))
    w.add("some.u64", u64(2 ** 40))
    w.add("some.f32", f32(0.25))
    w.add("some.strings", array(gguf.STRING, ["<s>", "\u2581", "日本"]))
    w.add("some.ints", array(gguf.INT32, [1, -2, 3]))
    w.add("some.floats", array(gguf.FLOAT32, [0.5, -1.5]))
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 5)).astype(np.float32)
    b = rng.standard_normal((4, 64)).astype(np.float16)
    c = rng.standard_normal((2, 64)).astype(np.float32)
    w.add_tensor("a", a)
    w.add_tensor("b", b)
    w.add_tensor("c", quantize_q8_0(c), Q8_0, ne=[64, 2])
    return w, a, b, c


def test_round_trip_metadata_and_tensors(tmp_path):
    w, a, b, c = _writer()
    path = str(tmp_path / "x.gguf")
    w.write(path)
    r = GGUFReader(path)
    assert r.version == 3
    assert r.architecture == "llama"
    assert r.metadata["general.flag"] is True
    assert r.metadata["some.u32"] == 7 and r.metadata_types["some.u32"] == gguf.UINT32
    assert r.metadata["some.i32"] == -3 and r.metadata_types["some.i32"] == gguf.INT32
    assert r.metadata["some.u64"] == 2 ** 40
    assert r.metadata["some.f32"] == 0.25 and r.metadata_types["some.f32"] == gguf.FLOAT32
    assert r.metadata["some.strings"] == ["<s>", "\u2581", "日本"]
    assert r.metadata["some.ints"] == [1, -2, 3]
    assert r.metadata["some.floats"] == [0.5, -1.5]
    assert r.tensors["a"].ne == [5, 3] and r.tensors["a"].shape == (3, 5)
    np.testing.assert_array_equal(r.tensors["a"].data, a)
    np.testing.assert_array_equal(r.tensors["b"].data, b)
    assert r.tensors["c"].type_name == "Q8_0" and r.tensors["c"].ne == [64, 2]
    assert r.tensors["c"].data.shape == (2, 68)
    for t in r.tensors.values():
        assert (r.data_offset + t.offset) % r.alignment == 0


def test_custom_alignment_is_written_and_honoured(tmp_path):
    w, a, _, _ = _writer()
    w.alignment = 64
    path = str(tmp_path / "x.gguf")
    w.write(path)
    r = GGUFReader(path)
    assert r.alignment == 64 and r.metadata["general.alignment"] == 64
    assert r.data_offset % 64 == 0 and all(t.offset % 64 == 0 for t in r.tensors.values())
    np.testing.assert_array_equal(r.tensors["a"].data, a)


def test_write_is_atomic_and_leaves_no_temporary_file(tmp_path):
    w, *_ = _writer()
    path = tmp_path / "x.gguf"
    path.write_bytes(b"old")
    w.write(str(path))
    assert path.read_bytes()[:4] == b"GGUF"
    assert os.listdir(tmp_path) == ["x.gguf"]


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "x.gguf"
    path.write_bytes(b"old")

    def broken(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        gguf.write_atomic(str(path), broken)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["x.gguf"]


def test_truncated_and_foreign_files_are_refused(tmp_path):
    w, *_ = _writer()
    good = tmp_path / "good.gguf"
    w.write(str(good))
    data = good.read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[: len(data) - 10])
    (tmp_path / "zip.gguf").write_bytes(b"PK\x03\x04" + data[4:])
    (tmp_path / "v9.gguf").write_bytes(data[:4] + struct.pack("<I", 9) + data[8:])
    (tmp_path / "empty.gguf").write_bytes(b"")
    for name, words in (("cut", "truncated"), ("zip", "not a GGUF"), ("v9", "version 9"), ("empty", "")):
        with pytest.raises(GGUFError, match=words):
            GGUFReader(str(tmp_path / f"{name}.gguf"))


def test_writer_requires_explicit_number_types_and_matching_sizes():
    w = GGUFWriter()
    with pytest.raises(TypeError):
        w.add("x", 3)
    with pytest.raises(GGUFError):
        w.add_tensor("q", np.zeros(10, np.uint8), Q8_0, ne=[32, 1])
