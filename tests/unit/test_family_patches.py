"""Contract tests of the patches issue 16 adds (vlexp.patches): each fails with a clear
message when a transformers upgrade changes the thing patched."""

from __future__ import annotations

import pytest


def test_expert_transpose_compares_with_the_zero3_full_shape():
    import torch
    from transformers.core_model_loading import Transpose

    from vlexp import patches

    patches.zero3_aware_expert_transpose()
    patches.zero3_aware_expert_transpose()  # idempotent
    assert getattr(Transpose.convert, "_vlexp_zero3", False)

    class Model(torch.nn.Module):
        def __init__(self, ds_shape=None):
            super().__init__()
            self.experts = torch.nn.Parameter(torch.empty(0))  # a ZeRO-3 placeholder
            if ds_shape is not None:
                self.experts.ds_shape = torch.Size(ds_shape)

    op = Transpose(1, 2, check_dims=True)
    saved = torch.zeros(4, 128, 64)  # already in the model's layout (transformers 5 saves so)
    kwargs = dict(full_layer_name="experts", source_patterns=["e"], target_patterns=["e"])
    kept = op.convert({"e": saved}, model=Model((4, 128, 64)), **kwargs)
    assert kept["e"].shape == (4, 128, 64), "transformers changed Transpose.convert's arguments"
    hub = torch.zeros(4, 64, 128)  # the hub layout: transposed
    assert op.convert({"e": hub}, model=Model((4, 128, 64)), **kwargs)["e"].shape == (4, 128, 64)
    # Without ZeRO-3 (no ds_shape) transformers' own comparison runs, unchanged.
    plain = torch.nn.Module()
    plain.experts = torch.nn.Parameter(torch.zeros(4, 128, 64))
    assert op.convert({"e": saved}, model=plain, **kwargs)["e"].shape == (4, 128, 64)


def test_qwen3_vl_moe_still_converts_experts_with_a_checked_transpose():
    from transformers.conversion_mapping import get_checkpoint_conversion_mapping
    from transformers.core_model_loading import Transpose

    mapping = get_checkpoint_conversion_mapping("qwen3_vl_moe") or []
    ops = [op for entry in mapping for op in getattr(entry, "operations", [])]
    if not any(isinstance(op, Transpose) and op.check_dims for op in ops):
        pytest.fail(
            "transformers no longer converts qwen3_vl_moe experts with Transpose(check_dims=True):"
            " check whether vlexp.patches.zero3_aware_expert_transpose is still needed"
        )


def test_router_logits_are_turned_off_in_the_config_only_when_on():
    from transformers import Qwen3VLMoeConfig

    from vlexp import patches

    class Holder:
        config = Qwen3VLMoeConfig(text_config={"output_router_logits": True})

    assert patches.router_logits_per_forward(Holder) is True
    assert Holder.config.get_text_config().output_router_logits is False
    assert patches.router_logits_per_forward(Holder) is False
