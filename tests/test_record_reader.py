"""cellseg's records read without TensorFlow: every field equal to schema.decode's, corrupt shards refused."""

import glob
import gzip
import os
import random

import numpy as np
import pytest
import tensorflow as tf

from cellseg import record_reader, schema


def shards(records_dir):
    return sorted(glob.glob(os.path.join(records_dir, "*.tfrecord*")))


def decoded_by_tensorflow(shard):
    compression = "GZIP" if shard.endswith(".gz") else ""
    return [{k: v.numpy() for k, v in schema.decode(raw).items()}
            for raw in tf.data.TFRecordDataset(shard, compression_type=compression)]


@pytest.mark.parametrize("fixture", ["fluo_records", "one_frame_records"])  # gzip with distance maps; plain without
def test_every_field_of_every_record_equals_schema_decode(fixture, request):
    paths = shards(request.getfixturevalue(fixture))
    assert paths
    count = 0
    for shard in paths:
        for ours, theirs in zip(record_reader.read(shard, verify=True), decoded_by_tensorflow(shard), strict=True):
            assert set(ours) == set(theirs)
            for name, value in theirs.items():
                if isinstance(value, bytes):  # str fields, as TensorFlow gives them
                    assert ours[name] == value, name
                    continue
                assert ours[name].dtype == value.dtype, name
                np.testing.assert_array_equal(ours[name], value, err_msg=name)
            count += 1
    assert count > 0


def test_the_crc_is_castagnoli_and_the_python_one_equals_the_c_one():
    assert record_reader._python_crc32c(b"123456789") == 0xE3069283  # the standard check value of CRC-32C
    data = random.Random(0).randbytes(5000)
    assert record_reader.masked_crc(data, record_reader._python_crc32c) == record_reader.masked_crc(data)


def test_unpacked_and_negative_ints_and_floats_parse_as_protobuf_parses_them():
    # Int64List [5, -3] and FloatList [1.5] written unpacked (one key per value), which writers may do.
    def varint(n):
        out = bytearray()
        n &= (1 << 64) - 1
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out)

    def message(number, payload):
        return varint(number << 3 | 2) + varint(len(payload)) + payload

    ints = message(3, varint(1 << 3) + varint(5) + varint(1 << 3) + varint(-3))
    floats = message(2, varint(1 << 3 | 5) + np.float32(1.5).tobytes())
    entries = message(1, message(1, b"a") + message(2, ints)) + message(1, message(1, b"b") + message(2, floats))
    serialized = message(1, entries)
    expected = tf.train.Example.FromString(serialized)
    parsed = record_reader.parse_example(serialized)
    assert parsed["a"] == list(expected.features.feature["a"].int64_list.value) == [5, -3]
    assert parsed["b"] == list(expected.features.feature["b"].float_list.value) == [1.5]


def test_corrupt_truncated_and_other_version_records_are_refused_in_one_line(fluo_records, tmp_path):
    shard = shards(fluo_records)[0]
    raw = gzip.open(shard).read()
    cases = {"corrupt record length": raw[:3] + bytes([raw[3] ^ 1]) + raw[4:],
             "corrupt record data": raw[:40] + bytes([raw[40] ^ 1]) + raw[41:],
             "truncated record": raw[:-10]}
    for reason, content in cases.items():
        path = tmp_path / f"{reason.replace(' ', '-')}.tfrecord"
        path.write_bytes(content)
        with pytest.raises(record_reader.RecordError, match=reason):
            list(record_reader.read(str(path), verify=True))
    example = tf.train.Example.FromString(next(record_reader.records(shard)))
    example.features.feature["schema_version"].int64_list.value[:] = [1]
    with pytest.raises(schema.SchemaError, match="schema version 1, but this cellseg reads version 2"):
        record_reader.decode(example.SerializeToString(), "shard")


def test_reading_records_imports_no_tensorflow(fluo_records):
    import subprocess
    import sys

    code = ("import sys, glob; from cellseg import record_reader; "
            f"n = sum(1 for s in sorted(glob.glob({fluo_records!r} + '/*.tfrecord.gz')) for _ in record_reader.read(s)); "
            "print(n, 'tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    frames = sum(1 for s in shards(fluo_records) for _ in tf.data.TFRecordDataset(s, compression_type="GZIP"))
    assert result.stdout.split() == [str(frames), "False"]
