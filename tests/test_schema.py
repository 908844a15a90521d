import os

import numpy as np
import pytest
import tensorflow as tf

from cellseg import ctc, preprocess, schema, targets, tiff


def encode_frame(frame, with_weights=True):
    raw = tiff.read(frame.image)
    mask_path, truth = frame.truth()
    labels = tiff.read(mask_path)
    image, intensities = preprocess.percentile_stretch(raw)
    weights = preprocess.border_weight_map(labels) if with_weights else None
    serialized = schema.encode(
        image=image, labels=labels, weights=weights, dataset=frame.dataset, sequence=frame.sequence,
        frame=frame.index, truth=truth, source_dtype=raw.dtype.name, percentiles=(2.0, 98.0),
        intensities=intensities,
    )
    return serialized, raw, image, labels, weights, intensities


def test_round_trip_from_synthetic_tiffs_equals_numpy(fluo_dataset):
    frame = ctc.discover(fluo_dataset).frames[3]
    serialized, raw, image, labels, weights, intensities = encode_frame(frame)
    decoded = schema.decode(tf.constant(serialized))
    height, width = raw.shape
    assert decoded["image"].shape == decoded["labels"].shape == decoded["weights"].shape == (height, width, 1)
    assert decoded["image"].dtype == tf.float32 and decoded["labels"].dtype == tf.int32
    np.testing.assert_array_equal(decoded["image"].numpy()[..., 0], schema.dequantize(schema.quantize(image)))
    np.testing.assert_allclose(decoded["image"].numpy()[..., 0], image, atol=0.5 / 65535 + 1e-7)
    np.testing.assert_array_equal(decoded["labels"].numpy()[..., 0], labels)
    np.testing.assert_array_equal(decoded["weights"].numpy()[..., 0], weights.astype(np.float16).astype(np.float32))
    assert decoded["schema_version"].numpy() == schema.SCHEMA_VERSION
    assert (decoded["height"].numpy(), decoded["width"].numpy()) == (height, width)
    assert decoded["dataset"].numpy() == b"Fluo-N2DH-SYNTH"
    assert decoded["sequence"].numpy() == b"01" and decoded["frame"].numpy() == 3
    assert decoded["truth"].numpy() == b"gold" and decoded["source_dtype"].numpy() == b"uint16"
    assert decoded["percentile_high"].numpy() == 98.0
    assert decoded["intensity_low"].numpy() == np.float32(intensities[0])
    assert decoded["intensity_high"].numpy() == np.float32(intensities[1])


def test_decode_runs_in_a_tf_data_map(fluo_dataset):
    frames = ctc.discover(fluo_dataset).frames
    records = [encode_frame(f, with_weights=False)[0] for f in frames[:3]]
    dataset = tf.data.Dataset.from_tensor_slices(records).map(schema.decode)
    shapes = [(x["image"].shape, x["frame"].numpy()) for x in dataset]
    assert shapes == [((96, 96, 1), t) for t in range(3)]
    first = next(iter(dataset))
    np.testing.assert_array_equal(first["weights"].numpy(), np.ones((96, 96, 1), np.float32))  # absent = 1
    np.testing.assert_array_equal(first["cell_distance"].numpy(), np.zeros((96, 96, 1), np.float32))  # absent = 0


def test_round_trip_with_distance_maps(fluo_dataset):
    frame = ctc.discover(fluo_dataset).frames[0]
    raw, labels = tiff.read(frame.image), tiff.read(frame.truth()[0])
    cell, neighbour = targets.distance_maps(labels)
    assert cell.max() == 1.0 and neighbour.max() > 0  # the synthetic nuclei touch in places
    serialized = schema.encode(
        image=preprocess.percentile_stretch(raw)[0], labels=labels, distances=(cell, neighbour), dataset="d",
        sequence="01", frame=0, truth="gold", source_dtype="uint16", percentiles=(2.0, 98.0), intensities=(0, 1))
    decoded = schema.decode(tf.constant(serialized))
    for name, value in (("cell_distance", cell), ("neighbour_distance", neighbour)):
        np.testing.assert_array_equal(decoded[name].numpy()[..., 0], value.astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(decoded["weights"].numpy(), np.ones(raw.shape + (1,), np.float32))


def example_with_version(version):
    feature = {
        "schema_version": tf.train.Feature(int64_list=tf.train.Int64List(value=[version])),
        "future_field": tf.train.Feature(int64_list=tf.train.Int64List(value=[1])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


@pytest.mark.parametrize("version", [0, 1, 99])
def test_unknown_schema_version_is_refused_with_a_clear_message(version):
    with pytest.raises(tf.errors.InvalidArgumentError, match="unknown schema version") as error:
        schema.decode(tf.constant(example_with_version(version)))
    assert f"= {version}" in str(error.value) or f"[{version}]" in str(error.value)
    dataset = tf.data.Dataset.from_tensors(example_with_version(version)).map(schema.decode)
    with pytest.raises(tf.errors.InvalidArgumentError, match="unknown schema version"):
        next(iter(dataset))
    with pytest.raises(schema.SchemaError, match=f"schema version {version}, but this cellseg reads version {schema.SCHEMA_VERSION}"):
        schema.check_version(version, "records/x/dataset.json")


def test_encode_refuses_mismatched_shapes_and_out_of_range_labels():
    image = np.zeros((4, 5), np.float32)
    common = dict(dataset="d", sequence="01", frame=0, truth="gold", source_dtype="uint8",
                  percentiles=(2.0, 98.0), intensities=(0.0, 1.0))
    with pytest.raises(schema.SchemaError, match="equal 2-D shapes"):
        schema.encode(image=image, labels=np.zeros((5, 4), np.uint16), **common)
    with pytest.raises(schema.SchemaError, match="weights"):
        schema.encode(image=image, labels=np.zeros((4, 5), np.uint16), weights=np.ones((4, 4)), **common)
    with pytest.raises(schema.SchemaError, match="neighbour_distance"):
        schema.encode(image=image, labels=np.zeros((4, 5), np.uint16),
                      distances=(np.zeros((4, 5)), np.zeros((5, 5))), **common)
    with pytest.raises(schema.SchemaError, match="0..65535"):
        schema.encode(image=image, labels=np.full((4, 5), 70000), **common)


def test_quantization_is_exact_for_16_bit_levels():
    levels = np.arange(0, 65536, dtype=np.uint16)
    np.testing.assert_array_equal(schema.quantize(schema.dequantize(levels)), levels)


def test_records_readme_documents_every_field():
    readme = open(os.path.join(os.path.dirname(__file__), "..", "records", "README.md")).read()
    assert f"## The example schema (version {schema.SCHEMA_VERSION})" in readme
    words = {"<u2": "uint16", "<f2": "float16", "int": "int64", "float": "float", "str": "str"}
    for field in schema.FIELDS:
        row = next((line for line in readme.splitlines() if line.startswith(f"| `{field.name}` |")), None)
        assert row is not None, f"records/README.md lacks {field.name}"
        assert words[field.dtype or field.kind] in row.split("|")[2]
        assert ("optional" in row) == field.optional
