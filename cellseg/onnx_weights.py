"""ONNX weights of a packaged cellseg network: written by tf2onnx, run by ONNX Runtime.

`write(network, path)` converts the package's portable network (`model_zoo`,
[n, 1, h, w] -> [n, C, h, w]) with any batch, height and width; `runner(path)`
gives a function of frames to outputs that ONNX Runtime computes, so a machine
with neither TensorFlow nor Keras' weights runs cellseg's network
(`cellseg-predict --engine=onnx`). tf2onnx is needed only to write (it needs
TensorFlow, as exports do); onnxruntime only to run.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import numpy as np

from cellseg import errors

try:  # the optional extras cellseg[onnx] and cellseg[bioimageio]
    import onnxruntime
except ImportError:
    onnxruntime = None

# Opset 17 (ONNX 1.12, 2022): every operator the U-Net needs, and run by every ONNX Runtime since 1.12.
OPSET = 17
NEEDS_ONNXRUNTIME = "it needs ONNX Runtime, which is not installed here: pip install 'cellseg[onnx]'"


def write(network, path: str, input_name: str, output_name: str) -> None:
    """The Keras `network` ([n, 1, h, w] float32 frames -> [n, C, h, w]) as an ONNX file at `path`, its input and
    output named as given, batch, height and width left free.

    tf2onnx on the network's TensorFlow function, as Keras' `export(format="onnx")` does, but with the output
    named (Keras' export calls it "Identity:0"), so that the ONNX tensors carry the package's tensor ids."""
    tf = importlib.import_module("tensorflow")  # loaded here, not with the module: predict imports it without TF
    tf2onnx = importlib.import_module("tf2onnx")
    signature = [tf.TensorSpec([None, 1, None, None], tf.float32, name=input_name)]
    serve = tf.function(lambda frames: {output_name: network(frames, training=False)}, input_signature=signature)
    tf2onnx.convert.from_function(serve, input_signature=signature, opset=OPSET, output_path=path)


def runner(path: str, input_name: str, name: str = "") -> Callable[[np.ndarray], np.ndarray]:
    """frames [n, 1, h, w] -> outputs [n, C, h, w] by ONNX Runtime on the CPU (or the GPU its build has);
    ValueError in one line naming `name` (default `path`) when it is not an ONNX model of that input."""
    name = name or path
    if onnxruntime is None:
        raise ValueError(f"{name}: {NEEDS_ONNXRUNTIME}")
    try:
        session = onnxruntime.InferenceSession(path, providers=onnxruntime.get_available_providers())
    except Exception as error:  # ONNX Runtime raises its own kinds (InvalidProtobuf, Fail, ...)
        raise ValueError(f"{name}: not a readable ONNX model ({errors.first_line(error)})") from None
    inputs = [node.name for node in session.get_inputs()]
    if inputs != [input_name]:
        raise ValueError(f"{name}: an ONNX model with inputs {inputs}, expected [{input_name!r}]")

    def run(frames: np.ndarray) -> np.ndarray:
        return session.run(None, {input_name: np.ascontiguousarray(frames, np.float32)})[0]

    return run
