"""GGUF v3 reader and writer (the file format of llama.cpp models and LoRA adapters).

Only what RepoTune needs: metadata of every type, tensor infos, tensor data as numpy views of a memory map of the
file, and an atomic writer. Shapes are given both ways: `ne` is ggml's order (fastest dimension first), `shape` is
numpy's (reversed).
"""
from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .files import write_atomic

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
DEFAULT_ALIGNMENT = 32

# Metadata value types (gguf_type in ggml/include/gguf.h).
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)

_SCALAR_FORMATS = {
    UINT8: "<B", INT8: "<b", UINT16: "<H", INT16: "<h", UINT32: "<I", INT32: "<i",
    FLOAT32: "<f", BOOL: "<?", UINT64: "<Q", INT64: "<q", FLOAT64: "<d",
}
_SCALAR_NUMPY = {
    UINT8: np.uint8, INT8: np.int8, UINT16: np.uint16, INT16: np.int16, UINT32: np.uint32, INT32: np.int32,
    FLOAT32: np.float32, BOOL: np.bool_, UINT64: np.uint64, INT64: np.int64, FLOAT64: np.float64,
}


class GGUFError(ValueError):
    """The file is not a GGUF file this reader understands (truncated, wrong magic, unknown version or type)."""


# ggml tensor types: id -> (name, block size in elements, bytes per block). Types without a dequantizer are still
# listed so that a model using them is reported by name instead of by number.
GGML_TYPES: Dict[int, Tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36), 10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98), 19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110), 22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1), 25: ("I16", 1, 2), 26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56), 30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),
}
GGML_TYPE_IDS = {name: tid for tid, (name, _, _) in GGML_TYPES.items()}


def type_name(ggml_type: int) -> str:
    return GGML_TYPES.get(ggml_type, (f"type{ggml_type}", 0, 0))[0]


def tensor_nbytes(ggml_type: int, ne: List[int]) -> int:
    if ggml_type not in GGML_TYPES:
        raise GGUFError(f"unknown ggml tensor type {ggml_type}")
    _, block, block_bytes = GGML_TYPES[ggml_type]
    n = int(np.prod(ne, dtype=np.int64)) if ne else 1
    if ne and ne[0] % block != 0:
        raise GGUFError(f"row length {ne[0]} is not a multiple of the {type_name(ggml_type)} block size {block}")
    return n // block * block_bytes


@dataclass
class TensorInfo:
    name: str
    ne: List[int]          # ggml order
    ggml_type: int
    offset: int            # relative to the start of the data section
    data: Any = None       # view of the file's map: typed for F32/F16/I*, raw uint8 bytes (shape[:-1] + [row bytes])
    start: int = 0         # absolute file offset of the data
    nbytes: int = 0

    @property
    def shape(self) -> Tuple[int, ...]:
        return tuple(reversed(self.ne))

    @property
    def type_name(self) -> str:
        return type_name(self.ggml_type)

    @property
    def n_elements(self) -> int:
        return int(np.prod(self.ne, dtype=np.int64))


_TYPED_VIEWS = {0: np.float32, 1: np.float16, 24: np.int8, 25: np.int16, 26: np.int32, 27: np.int64, 28: np.float64,
                30: np.uint16}


class GGUFReader:
    """Reads a GGUF file. Tensor data is memory-mapped, never copied, so a multi-gigabyte model opens instantly.

    Whoever copies the tensors out (the model loader) calls `release(info)` after each one, so that the file's pages
    do not pile up in the process's resident memory while the copies do, and `close()` (or `with`) when done: the
    map is then unmapped. The map is a plain `mmap.mmap` (not np.memmap) so that both are under our control."""

    def __init__(self, path: str):
        self.path = path
        self._map = None
        try:
            with open(path, "rb") as f:
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            self._mm = np.frombuffer(self._map, dtype=np.uint8)
        except (OSError, ValueError) as e:
            raise GGUFError(f"cannot open {path}: {e}") from e
        self._pos = 0
        self.metadata: Dict[str, Any] = {}
        self.metadata_types: Dict[str, int] = {}
        self.tensors: Dict[str, TensorInfo] = {}
        try:
            self._parse()
        except GGUFError:
            self.close()
            raise
        # Nonsense fields (alignment 0, shapes that do not fit the data) fail in numpy or arithmetic, not in struct.
        except (struct.error, IndexError, UnicodeDecodeError, ValueError, ZeroDivisionError, OverflowError) as e:
            self.close()
            raise GGUFError(f"{path} is truncated or corrupt ({e})") from e

    # -- low-level parsing -------------------------------------------------------------------------------------
    def _read(self, n: int) -> bytes:
        if self._pos + n > len(self._mm):
            raise GGUFError(f"{self.path} is truncated (wanted {n} bytes at offset {self._pos}, file has {len(self._mm)})")
        b = self._mm[self._pos:self._pos + n].tobytes()
        self._pos += n
        return b

    def _scalar(self, vtype: int):
        fmt = _SCALAR_FORMATS[vtype]
        return struct.unpack(fmt, self._read(struct.calcsize(fmt)))[0]

    def _string(self) -> str:
        n = self._scalar(UINT64)
        return self._read(n).decode("utf-8")

    def _value(self, vtype: int):
        if vtype in _SCALAR_FORMATS:
            return self._scalar(vtype)
        if vtype == STRING:
            return self._string()
        if vtype == ARRAY:
            itype = self._scalar(UINT32)
            n = self._scalar(UINT64)
            if itype in _SCALAR_NUMPY and itype != BOOL:
                dt = np.dtype(_SCALAR_NUMPY[itype]).newbyteorder("<")
                arr = np.frombuffer(self._read(n * dt.itemsize), dtype=dt)
                return arr.tolist()
            return [self._value(itype) for _ in range(n)]
        raise GGUFError(f"unknown metadata value type {vtype}")

    def _parse(self) -> None:
        if self._read(4) != GGUF_MAGIC:
            raise GGUFError(f"{self.path} is not a GGUF file (bad magic)")
        self.version = self._scalar(UINT32)
        if self.version not in (2, 3):
            raise GGUFError(f"{self.path} has GGUF version {self.version}; only versions 2 and 3 are supported")
        n_tensors = self._scalar(UINT64)
        n_kv = self._scalar(UINT64)
        for _ in range(n_kv):
            key = self._string()
            vtype = self._scalar(UINT32)
            self.metadata_types[key] = vtype
            self.metadata[key] = self._value(vtype)
        infos = []
        for _ in range(n_tensors):
            name = self._string()
            n_dims = self._scalar(UINT32)
            ne = [self._scalar(UINT64) for _ in range(n_dims)]
            ggml_type = self._scalar(UINT32)
            offset = self._scalar(UINT64)
            infos.append(TensorInfo(name, ne, ggml_type, offset))
        self.alignment = int(self.metadata.get("general.alignment", DEFAULT_ALIGNMENT))
        self.data_offset = _align(self._pos, self.alignment)
        for t in infos:
            nbytes = tensor_nbytes(t.ggml_type, t.ne)
            start = self.data_offset + t.offset
            if start + nbytes > len(self._mm):
                raise GGUFError(f"{self.path} is truncated: tensor {t.name} ends past the end of the file")
            raw = self._mm[start:start + nbytes]
            t.start, t.nbytes = start, nbytes
            if t.ggml_type in _TYPED_VIEWS:
                t.data = raw.view(_TYPED_VIEWS[t.ggml_type]).reshape(t.shape)
            else:
                rows = list(t.shape[:-1])
                t.data = raw.reshape(rows + [nbytes // max(1, int(np.prod(rows, dtype=np.int64)))])
            self.tensors[t.name] = t

    # -- releasing the map ---------------------------------------------------------------------------------------
    def release(self, info: TensorInfo) -> None:
        """Drop the pages of one tensor's data from this process's resident memory (they stay in the OS page cache
        and come back if the data is read again). Call it once the tensor has been copied out."""
        advise = getattr(self._map, "madvise", None)          # Python 3.8+, on systems with madvise()
        flag = getattr(mmap, "MADV_DONTNEED", None)
        if advise is None or flag is None or self._map.closed or info.nbytes == 0:
            return
        page = mmap.PAGESIZE
        lo = info.start // page * page
        try:
            advise(flag, lo, info.start + info.nbytes - lo)
        except (OSError, ValueError):
            pass   # only a memory-use optimization

    def close(self) -> None:
        """Unmap the file. Tensor data views become None; copies made from them are unaffected."""
        for t in self.tensors.values():
            t.data = None
        self._mm = None
        if self._map is not None and not self._map.closed:
            try:
                self._map.close()
            except BufferError:
                # A view is still referenced somewhere: the map goes when that view does.
                pass
        self._map = None

    def __enter__(self) -> "GGUFReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- convenience -------------------------------------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    @property
    def architecture(self) -> Optional[str]:
        return self.metadata.get("general.architecture")


def _align(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment


# --------------------------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------------------------

@dataclass
class Typed:
    """A metadata value with an explicit GGUF type: llama.cpp checks scalar types strictly (u32 is not i32)."""
    vtype: int
    value: Any
    item_type: Optional[int] = None  # for arrays


def u32(v: int) -> Typed: return Typed(UINT32, int(v))
def i32(v: int) -> Typed: return Typed(INT32, int(v))
def f32(v: float) -> Typed: return Typed(FLOAT32, float(v))
def u64(v: int) -> Typed: return Typed(UINT64, int(v))
def array(item_type: int, values) -> Typed: return Typed(ARRAY, list(values), item_type)


@dataclass
class _PendingTensor:
    name: str
    ne: List[int]
    ggml_type: int
    data: bytes


@dataclass
class GGUFWriter:
    alignment: int = DEFAULT_ALIGNMENT
    metadata: Dict[str, Typed] = field(default_factory=dict)
    tensors: List[_PendingTensor] = field(default_factory=list)

    def add(self, key: str, value: Any) -> None:
        """Add a metadata key. Plain str and bool are typed automatically; numbers must be wrapped (u32, f32...)."""
        if isinstance(value, Typed):
            self.metadata[key] = value
        elif isinstance(value, bool):
            self.metadata[key] = Typed(BOOL, value)
        elif isinstance(value, str):
            self.metadata[key] = Typed(STRING, value)
        else:
            raise TypeError(f"metadata {key}: wrap numbers with u32()/i32()/f32()/u64() so the GGUF type is explicit")

    def add_tensor(self, name: str, data: np.ndarray, ggml_type: Optional[int] = None, ne: Optional[List[int]] = None) -> None:
        """Add a tensor. F32/F16 numpy arrays give their type and shape; quantized data passes raw bytes + ne."""
        if ggml_type is None:
            if data.dtype == np.float32:
                ggml_type = 0
            elif data.dtype == np.float16:
                ggml_type = 1
            elif data.dtype == np.int32:
                ggml_type = 26
            else:
                raise TypeError(f"tensor {name}: give ggml_type for dtype {data.dtype}")
        if ne is None:
            ne = list(reversed(data.shape))
        raw = np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<"), copy=False).tobytes()
        expected = tensor_nbytes(ggml_type, ne)
        if len(raw) != expected:
            raise GGUFError(f"tensor {name}: {len(raw)} bytes given, {type_name(ggml_type)} {ne} needs {expected}")
        self.tensors.append(_PendingTensor(name, list(ne), ggml_type, raw))

    def _encode_value(self, out: bytearray, vtype: int, value: Any, item_type: Optional[int] = None) -> None:
        if vtype in _SCALAR_FORMATS:
            out += struct.pack(_SCALAR_FORMATS[vtype], value)
        elif vtype == STRING:
            b = value.encode("utf-8")
            out += struct.pack("<Q", len(b)) + b
        elif vtype == ARRAY:
            assert item_type is not None
            out += struct.pack("<IQ", item_type, len(value))
            if item_type in _SCALAR_NUMPY and item_type != BOOL:
                out += np.asarray(value, dtype=np.dtype(_SCALAR_NUMPY[item_type]).newbyteorder("<")).tobytes()
            else:
                for v in value:
                    self._encode_value(out, item_type, v)
        else:
            raise GGUFError(f"unknown metadata value type {vtype}")

    def to_bytes_header(self) -> Tuple[bytes, List[int]]:
        out = bytearray()
        meta = dict(self.metadata)
        if self.alignment != DEFAULT_ALIGNMENT:
            meta["general.alignment"] = u32(self.alignment)
        # Counted after the merge: a general.alignment already in the metadata must not be counted twice.
        out += GGUF_MAGIC + struct.pack("<IQQ", GGUF_VERSION, len(self.tensors), len(meta))
        for key, tv in meta.items():
            self._encode_value(out, STRING, key)
            out += struct.pack("<I", tv.vtype)
            self._encode_value(out, tv.vtype, tv.value, tv.item_type)
        offsets, off = [], 0
        for t in self.tensors:
            self._encode_value(out, STRING, t.name)
            out += struct.pack("<I", len(t.ne)) + struct.pack(f"<{len(t.ne)}Q", *t.ne)
            out += struct.pack("<IQ", t.ggml_type, off)
            offsets.append(off)
            off = _align(off + len(t.data), self.alignment)
        out += b"\0" * (_align(len(out), self.alignment) - len(out))
        return bytes(out), offsets

    def write(self, path: str) -> None:
        header, offsets = self.to_bytes_header()

        def body(f):
            f.write(header)
            pos = 0
            for t, off in zip(self.tensors, offsets):
                f.write(b"\0" * (off - pos))
                f.write(t.data)
                pos = off + len(t.data)

        write_atomic(path, body)
