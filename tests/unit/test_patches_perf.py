"""Contract tests of the vlexp.patches entries issue #17 added (phase timers, liger classes).

Each fails with a message that says what changed upstream, so an upgrade of TRL,
transformers or liger-kernel shows which patch to revisit."""

from __future__ import annotations

import importlib.util
import inspect

import pytest

from vlexp import patches


@pytest.mark.parametrize(
    "path", ["trl:GRPOTrainer", "trl:RLOOTrainer", "vlexp.algorithms.ppo:PPOTrainer"]
)
def test_rollout_trainers_prepare_inputs_inside_training_step(path):
    """update = training_step - _prepare_inputs holds only while the rollout (generation,
    rewards, log-probs) happens inside `_prepare_inputs`, called from `training_step`."""
    import transformers

    module, _, name = path.partition(":")
    cls = getattr(importlib.import_module(module), name)
    for method in patches.ROLLOUT_METHODS:
        assert callable(getattr(cls, method, None)), f"{path}.{method} is gone"
    # transformers' training_step calls _prepare_inputs; GRPO/RLOO override training_step
    # but still go through the base class's.
    base = inspect.getsource(transformers.Trainer.training_step)
    assert "self._prepare_inputs(" in base
    own = inspect.getsource(cls.training_step)
    assert "super().training_step(" in own or "self._prepare_inputs(" in own


@pytest.mark.parametrize("path", ["trl:GRPOTrainer", "trl:RLOOTrainer"])
def test_trl_generation_goes_through_the_models_generate(path):
    """The HF generate path calls `<unwrapped model>.generate`, the method the timer wraps."""
    cls = getattr(importlib.import_module("trl"), path.split(":")[1])
    source = inspect.getsource(cls)
    assert "unwrapped_model.generate(" in source, f"{path} no longer calls model.generate"


def test_trl_profiling_still_bypasses_the_logs():
    """TRL's own phase timings go to W&B/MLflow only; if they ever reach `logs`, vlexp's
    timers could be replaced by them."""
    from trl.extras import profiling

    source = inspect.getsource(profiling.ProfilingContext._log_metrics)
    assert "wandb.log(" in source and "logs" not in source


def test_transformers_dropped_the_per_model_output_classes_liger_imports():
    """While transformers returns MultimodalCausalLMOutputWithPast, liger (0.8.5) needs the
    alias; the day transformers has the old names again, the patch does nothing."""
    from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as qwen

    forward = inspect.signature(qwen.Qwen2_5_VLForConditionalGeneration.forward)
    assert "MultimodalCausalLMOutputWithPast" in str(forward.return_annotation)
    patches.liger_output_classes()
    assert qwen.Qwen2_5_VLCausalLMOutputWithPast is qwen.MultimodalCausalLMOutputWithPast
    assert patches.liger_output_classes() == []  # idempotent


@pytest.mark.skipif(importlib.util.find_spec("liger_kernel") is None, reason="liger-kernel absent")
def test_liger_qwen2_5_vl_patch_imports_after_the_alias():
    patches.liger_output_classes()
    from liger_kernel.transformers.model.qwen2_5_vl import lce_forward  # noqa: F401
    from liger_kernel.transformers.model.qwen2_vl import lce_forward as qwen2  # noqa: F401
