"""What cellseg's two Beam jobs share (`ctc_to_tfrecord`, `predict_sequences`): how a local job runs, the
options that no Beam class knows, and whole files read and JSON written on any Beam filesystem. It loads no
TensorFlow: the prediction job runs on a machine with JAX alone."""

from __future__ import annotations

import argparse
import json
import sys

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, PrismRunnerOptions, StandardOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from cellseg import errors


def realize_cffi_libraries() -> None:
    """Builds every attribute of each cffi library loaded so far, once, in the calling thread.

    Beam's worker weighs each side input it caches with objsize, which calls `vars()` on every
    entry of sys.modules. On a cffi library (cryptography's `_openssl.lib`, which Beam imports)
    that builds its attributes lazily, and cffi 2 does not lock that building on a GIL build:
    two worker threads reading side inputs at once aborted a conversion with cffi's assertion
    `realize_c_type.c: ... opcodes[index] & 1) == 1` (python-cffi/cffi issue 271). Built here
    once, before any worker thread runs, every later `vars()` only copies the cached attributes.
    """
    for module in list(sys.modules.values()):
        if type(module).__module__ == "_cffi_backend" and type(module).__name__ == "Lib":
            try:
                vars(module)
            except Exception:  # a symbol that cannot be built fails the same way where it is used
                pass


# On import: the launcher imports this module before it builds a pipeline, and a worker
# before it runs a DoFn of either job (unpickling imports the job's module, which imports this).
realize_cffi_libraries()


def read_bytes(path: str) -> bytes:
    """A whole file from any Beam filesystem."""
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            return handle.read()
    except Exception as error:  # BeamIOError, FileNotFoundError, permission errors
        raise ValueError(f"{path}: cannot read ({errors.first_line(error)})") from error


def write_json(value: dict, path: str) -> None:
    with FileSystems.create(path, mime_type="application/json") as handle:
        handle.write((json.dumps(value, indent=2, sort_keys=False) + "\n").encode())


def local_runner(options: PipelineOptions):
    """The Python FnApiRunner for DirectRunner jobs; None (Beam's choice) for any other runner.

    Beam's DirectRunner first tries its Go-based Prism runner, which it downloads
    from GitHub at run time, and falls back to the FnApiRunner when that fails.
    cellseg goes straight to the FnApiRunner, which honours --direct_running_mode
    and --direct_num_workers, so a local conversion never needs the internet.
    Pass --prism_location to use Prism.
    """
    runner = options.view_as(StandardOptions).runner
    if runner in (None, "DirectRunner") and not options.view_as(PrismRunnerOptions).prism_location:
        return FnApiRunner()
    return None


def with_local_defaults(beam_args: list[str]) -> list[str]:
    """Local jobs default to threads on all cores, the fastest DirectRunner mode measured
    (benchmarks/convert.py: 1.5x a plain loop on 2 cores, where one process gives 0.9x and
    multi_processing 1.0x, its workers each starting TensorFlow). The user's choice wins."""
    args = list(beam_args)
    if not any(arg.startswith("--direct_running_mode") for arg in args):
        args.append("--direct_running_mode=multi_threading")
        if not any(arg.startswith("--direct_num_workers") for arg in args):
            args.append("--direct_num_workers=0")
    return args


def unknown_beam_args(args: list[str]) -> list[str]:
    """The arguments that no Beam PipelineOptions class knows (Beam itself would drop them with a warning)."""
    parser = argparse.ArgumentParser(allow_abbrev=False, add_help=False)
    seen = set()
    for cls in PipelineOptions.__subclasses__():
        if cls.__name__ in seen:
            continue
        seen.add(cls.__name__)
        try:
            cls._add_argparse_args(parser)  # pylint: disable=protected-access
        except argparse.ArgumentError:
            continue
    _, unknown = parser.parse_known_args(args)
    return [arg for arg in unknown if arg.startswith("-")]
