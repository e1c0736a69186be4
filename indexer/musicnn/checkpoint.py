"""Read a TensorFlow 1 "V2" checkpoint (``PREFIX.index`` + ``PREFIX.data-00000-of-00001``) with
``struct`` and NumPy: no TensorFlow, no protobuf package (musicnn-spec §2).

- ``.index`` is a LevelDB-format table with uncompressed blocks. Its last 48 bytes are the
  footer: two block handles (metaindex, index; each a pair of varints: offset, size), padding,
  and the magic number ``0xdb4775248b80fb57``. The index block's values are handles of the data
  blocks; a data block's entries map tensor names to ``BundleEntryProto`` messages.
- A block holds entries (varint shared key length, varint unshared length, varint value length,
  the key's new suffix, the value), then restart offsets (uint32 each) and their count (uint32).
  Each block is followed by one byte of compression type (0: none) and a 4-byte checksum.
- A ``BundleEntryProto`` (protobuf wire format) gives dtype (field 1), shape (field 2: repeated
  field 2 ``Dim`` whose field 1 is the size), shard (3), offset (4) and size (5) in the data file.

Errors name the file and what is wrong with it (:class:`CheckpointError`).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

MAGIC = 0xDB4775248B80FB57
FOOTER = 48
DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64, 19: np.float16}
"""TensorFlow's DataType enum → NumPy (the ones a checkpoint of this kind holds)."""


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read: truncated, not a checkpoint, or inconsistent."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """(value, next position) of the protobuf/LevelDB varint at ``pos``."""
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise CheckpointError("a varint runs past the end of its block")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _block(data: bytes, offset: int, size: int, where: Path) -> list[tuple[bytes, bytes]]:
    """The (key, value) entries of the table block at ``offset``."""
    if offset < 0 or size < 4 or offset + size + 5 > len(data):
        raise CheckpointError(f"{where}: a block ({offset}+{size}) lies outside the file "
                              f"({len(data)} bytes): the file is truncated")
    if data[offset + size] != 0:
        raise CheckpointError(f"{where}: a block is compressed (type {data[offset + size]}); only "
                              "uncompressed checkpoint indexes are read")
    block = data[offset : offset + size]
    (n_restarts,) = struct.unpack_from("<I", block, size - 4)
    end = size - 4 - 4 * n_restarts
    if end < 0:
        raise CheckpointError(f"{where}: a block's restart array is larger than the block")
    entries = []
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        length, pos = _varint(block, pos)
        if shared > len(key) or pos + unshared + length > end:
            raise CheckpointError(f"{where}: a block entry runs past its block")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        entries.append((key, block[pos : pos + length]))
        pos += length
    return entries


def _fields(message: bytes) -> list[tuple[int, int | bytes]]:
    """The (field number, value) pairs of a protobuf message (varints, fixed32/64, bytes)."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(message):
        tag, pos = _varint(message, pos)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(message, pos)
            out.append((field, value))
        elif wire == 2:
            length, pos = _varint(message, pos)
            out.append((field, message[pos : pos + length]))
            pos += length
        elif wire == 5:
            out.append((field, struct.unpack_from("<I", message, pos)[0]))
            pos += 4
        elif wire == 1:
            out.append((field, struct.unpack_from("<Q", message, pos)[0]))
            pos += 8
        else:
            raise CheckpointError(f"unknown protobuf wire type {wire}")
    return out


def _entry(value: bytes) -> tuple[int, tuple[int, ...], int, int, int]:
    """(dtype, shape, shard, offset, size) of a ``BundleEntryProto``."""
    dtype = shard = offset = size = 0
    shape: list[int] = []
    for field, v in _fields(value):
        if field == 1 and isinstance(v, int):
            dtype = v
        elif field == 2 and isinstance(v, bytes):
            for sub, dim in _fields(v):
                if sub == 2 and isinstance(dim, bytes):
                    sizes = [s for f, s in _fields(dim) if f == 1 and isinstance(s, int)]
                    shape.append(sizes[0] if sizes else 0)
        elif field == 3 and isinstance(v, int):
            shard = v
        elif field == 4 and isinstance(v, int):
            offset = v
        elif field == 5 and isinstance(v, int):
            size = v
    return dtype, tuple(shape), shard, offset, size


def read_checkpoint(prefix: str | Path, *, skip: tuple[str, ...] = ("/Adam", "beta1_power", "beta2_power"),
                    ) -> dict[str, np.ndarray]:
    """Every tensor of the checkpoint at ``prefix`` by variable name (optimizer slots skipped).

    Parameters
    ----------
    prefix : path
        The checkpoint prefix: the files are ``PREFIX.index`` and ``PREFIX.data-00000-of-00001``.
        (MusiCNN's prefix is its folder with a trailing separator, so its files are ``.index``...)
    skip : tuple of str
        Variables whose name contains one of these are not read.

    Raises
    ------
    CheckpointError
        Missing or truncated files, a wrong magic number, entries outside the data file.
    """
    prefix = str(prefix)
    index_path, data_path = Path(prefix + ".index"), Path(prefix + ".data-00000-of-00001")
    for path in (index_path, data_path):
        if not path.is_file():
            raise CheckpointError(f"{path}: missing (a checkpoint is PREFIX.index + PREFIX.data-00000-of-00001)")
    index = index_path.read_bytes()
    if len(index) < FOOTER:
        raise CheckpointError(f"{index_path}: {len(index)} bytes, shorter than a table footer: truncated")
    (magic,) = struct.unpack_from("<Q", index, len(index) - 8)
    if magic != MAGIC:
        raise CheckpointError(f"{index_path}: not a TensorFlow checkpoint index (magic {magic:#018x}, "
                              f"expected {MAGIC:#018x}): the file is damaged or of another kind")
    footer = index[len(index) - FOOTER :]
    _, pos = _varint(footer, 0)  # metaindex offset
    _, pos = _varint(footer, pos)  # metaindex size
    index_offset, pos = _varint(footer, pos)
    index_size, _ = _varint(footer, pos)
    data = data_path.read_bytes()
    tensors: dict[str, np.ndarray] = {}
    for _, handle in _block(index, index_offset, index_size, index_path):
        offset, pos = _varint(handle, 0)
        size, _ = _varint(handle, pos)
        for key, value in _block(index, offset, size, index_path):
            name = key.decode("utf-8", "replace")
            if not name or any(s in name for s in skip):
                continue  # the empty key is the bundle header
            dtype, shape, shard, start, nbytes = _entry(value)
            if dtype not in DTYPES:
                raise CheckpointError(f"{index_path}: {name} has TensorFlow dtype {dtype}, not read here")
            if shard != 0:
                raise CheckpointError(f"{index_path}: {name} lies in shard {shard}; "
                                      "only one-shard checkpoints are read")
            kind = np.dtype(DTYPES[dtype])
            count = int(np.prod(shape, dtype=np.int64)) if shape else 1
            if nbytes != count * kind.itemsize or start + nbytes > len(data):
                raise CheckpointError(f"{data_path}: {name} ({shape}, {nbytes} bytes at {start}) lies outside "
                                      f"the file ({len(data)} bytes): the file is truncated or damaged")
            tensors[name] = np.frombuffer(data, dtype=kind.newbyteorder("<"), count=count, offset=start).reshape(shape)
    if not tensors:
        raise CheckpointError(f"{index_path}: holds no tensors")
    return tensors
