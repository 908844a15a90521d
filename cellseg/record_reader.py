"""cellseg's TFRecord shards read without TensorFlow: numpy frames decoded as `schema.decode` decodes them.

A machine with JAX and no TensorFlow (a new GPU driver, a 64 MB limit on what
travels) still has to read the records that `cellseg-convert` wrote. Three
layers, each small and public in format:

- the TFRecord framing: per record a little-endian uint64 length, the masked
  CRC-32C of those 8 bytes, the data, the masked CRC-32C of the data
  (gzip shards are decompressed as they are read);
- the protocol-buffer wire format of `tf.train.Example`, of which only the
  messages it uses are parsed (Features' map, BytesList, FloatList, Int64List,
  packed or not);
- `record_fields.FIELDS`, the one table of cellseg's fields: arrays reshaped to
  H x W x 1 and cast as `schema.decode` casts them, absent optional maps filled
  as it fills them, and any schema version but `schema.SCHEMA_VERSION` refused.

The length's CRC is always checked; the data's when `google_crc32c` is
installed (it comes with Beam's GCP extra), or with `verify=True` in pure
Python (about 1 s a megabyte).
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterator

import numpy as np

from cellseg import record_fields

_MASK_DELTA = 0xA282EAD8


def _table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _table()


def _python_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


try:  # the C implementation, where installed
    from google_crc32c import value as _fast_crc32c
except ImportError:
    _fast_crc32c = None


def masked_crc(data: bytes, crc32c=None) -> int:
    """TFRecord's masked CRC-32C of `data`."""
    crc = (crc32c or _fast_crc32c or _python_crc32c)(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


class RecordError(ValueError):
    """A shard that is not a whole TFRecord file, or a record that is not a cellseg example."""


def records(path: str, verify: bool | None = None, opener=open) -> Iterator[bytes]:
    """The serialized records of one shard (gzip when its name ends in .gz). `verify`: check each record's data
    CRC (None: when the C implementation is installed). `opener(path, "rb")` opens the file (a remote file
    system's own)."""
    check_data = _fast_crc32c is not None if verify is None else verify
    with opener(path, "rb") as raw, (gzip.GzipFile(fileobj=raw) if path.endswith(".gz") else raw) as handle:
        offset = 0
        while True:
            header = handle.read(12)
            if not header:
                return
            if len(header) < 12:
                raise RecordError(f"{path}: truncated record header at byte {offset}")
            length, length_crc = struct.unpack("<QI", header)
            if masked_crc(header[:8]) != length_crc:
                raise RecordError(f"{path}: corrupt record length at byte {offset}")
            data = handle.read(length)
            footer = handle.read(4)
            if len(data) < length or len(footer) < 4:
                raise RecordError(f"{path}: truncated record at byte {offset}")
            if check_data and masked_crc(data) != struct.unpack("<I", footer)[0]:
                raise RecordError(f"{path}: corrupt record data at byte {offset}")
            offset += 16 + length
            yield data


def _varint(buffer: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buffer[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


def _fields(buffer: bytes) -> Iterator[tuple[int, int, bytes | int]]:
    """(field number, wire type, value) of a message: a varint, a length-delimited payload, or 4 / 8 raw bytes."""
    position, end = 0, len(buffer)
    while position < end:
        key, position = _varint(buffer, position)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, position = _varint(buffer, position)
        elif wire == 2:
            length, position = _varint(buffer, position)
            value, position = buffer[position:position + length], position + length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, position = buffer[position:position + size], position + size
        else:
            raise RecordError(f"unsupported protocol-buffer wire type {wire}")
        yield number, wire, value


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _feature(buffer: bytes) -> list:
    """A tf.train.Feature's values: bytes, floats or ints."""
    values: list = []
    for kind, _, content in _fields(buffer):  # 1 bytes_list, 2 float_list, 3 int64_list
        for _, wire, value in _fields(content):
            if kind == 1:
                values.append(bytes(value))
            elif kind == 2:
                values.extend(struct.unpack(f"<{len(value) // 4}f", value) if wire == 2 else
                              struct.unpack("<f", value))
            elif kind == 3:
                if wire == 2:
                    position = 0
                    while position < len(value):
                        number, position = _varint(value, position)
                        values.append(_signed(number))
                else:
                    values.append(_signed(value))
    return values


def parse_example(serialized: bytes) -> dict[str, list]:
    """A serialized tf.train.Example as {feature name: its values}."""
    features: dict[str, list] = {}
    for number, _, message in _fields(serialized):
        if number != 1:  # Example.features
            continue
        for entry_number, _, entry in _fields(message):
            if entry_number != 1:  # Features.feature, a map entry
                continue
            key, value = "", b""
            for part, _, content in _fields(entry):
                if part == 1:
                    key = bytes(content).decode()
                elif part == 2:
                    value = content
            features[key] = _feature(value)
    return features


def decode(serialized: bytes, where: str = "record") -> dict:
    """One cellseg example as `schema.decode` gives it, in numpy: image (float32, H x W x 1, [0, 1]), labels
    (int32), weights (float32, ones where absent), cell_distance and neighbour_distance (float32, zeros where
    absent), the scalar fields as numpy scalars (str fields as bytes, as TensorFlow gives them)."""
    features = parse_example(serialized)
    version = features.get("schema_version", [-1])[0]
    record_fields.check_version(version, where)
    height, width = int(features["height"][0]), int(features["width"][0])
    out = {}
    for field in record_fields.FIELDS:
        values = features.get(field.name)
        if field.kind == "array":
            if values and values[0]:
                array = np.frombuffer(values[0], np.dtype(field.dtype)).reshape(height, width, 1)
            elif field.optional:
                array = (np.ones if field.name == "weights" else np.zeros)((height, width, 1), np.dtype(field.dtype))
            else:
                raise RecordError(f"{where}: no {field.name}")
            out[field.name] = array
        elif values is None:
            raise RecordError(f"{where}: no {field.name}")
        elif field.kind == "int":
            out[field.name] = np.int64(values[0])
        elif field.kind == "float":
            out[field.name] = np.float32(values[0])
        else:
            out[field.name] = values[0]
    out["image"] = out["image"].astype(np.float32) / np.float32(record_fields.IMAGE_SCALE)
    out["labels"] = out["labels"].astype(np.int32)
    for name in ("weights", "cell_distance", "neighbour_distance"):
        out[name] = out[name].astype(np.float32)
    return out


def read(path: str, verify: bool | None = None, opener=open) -> Iterator[dict]:
    """The decoded examples of one shard, in order (`records` says what `opener` is)."""
    for index, serialized in enumerate(records(path, verify, opener)):
        yield decode(serialized, f"{path} (record {index})")
