"""One contract test per patch in vlexp.patches: each fails with a message naming the patch
when a TRL, transformers or qwen-vl-utils upgrade changes the thing it reaches into.

Run these first when moving to a new release (README: "Moving to a new TRL release")."""

from __future__ import annotations

import inspect
import logging
from types import SimpleNamespace

import pytest

from vlexp import patches


def _contract(condition: bool, patch: str, what: str) -> None:
    assert condition, (
        f"vlexp.patches.{patch}: {what}. The library changed the internals this patch relies "
        f"on (written against {patches.TESTED}); update the patch, then this test."
    )


def test_share_checkpoint_conversion_finds_the_qwen_layout():
    from transformers.conversion_mapping import get_checkpoint_conversion_mapping

    source = get_checkpoint_conversion_mapping("Qwen2VLForConditionalGeneration")
    _contract(bool(source), "share_checkpoint_conversion", "no key conversion for Qwen2-VL")
    patches.share_checkpoint_conversion("VlexpContractProbe", "Qwen2VLForConditionalGeneration")
    shared = get_checkpoint_conversion_mapping("VlexpContractProbe")
    _contract(
        [repr(m) for m in shared] == [repr(m) for m in source],
        "share_checkpoint_conversion",
        "the registered mapping differs from the source's",
    )


def test_zero3_init_off_clears_what_from_pretrained_reads():
    from transformers.integrations import deepspeed as ds

    _contract(
        hasattr(ds, "_hf_deepspeed_config_weak_ref"),
        "zero3_init_off",
        "transformers.integrations.deepspeed._hf_deepspeed_config_weak_ref is gone",
    )
    fake = SimpleNamespace(is_zero3=lambda: True)
    saved = ds._hf_deepspeed_config_weak_ref
    ds._hf_deepspeed_config_weak_ref = lambda: fake
    try:
        _contract(ds.is_deepspeed_zero3_enabled(), "zero3_init_off", "ZeRO-3 not read from the ref")
        with patches.zero3_init_off():
            _contract(
                not ds.is_deepspeed_zero3_enabled(),
                "zero3_init_off",
                "ZeRO-3 still enabled with the ref cleared",
            )
        _contract(ds.is_deepspeed_zero3_enabled(), "zero3_init_off", "the ref was not restored")
    finally:
        ds._hf_deepspeed_config_weak_ref = saved


def test_guarded_logging_integrations_cannot_stop_training(monkeypatch, caplog):
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
    from transformers.integrations import integration_utils
    from transformers.trainer_callback import CallbackHandler, DefaultFlowCallback

    class Broken(TrainerCallback):
        def on_log(self, args, state, control, **kwargs):
            raise ConnectionError("server unreachable")

    monkeypatch.setitem(integration_utils.INTEGRATION_TO_CALLBACK, "broken", Broken)
    names = patches.guard_logging_integrations()
    _contract("WandbCallback" in names, "guard_logging_integrations", "no WandbCallback")
    handler = CallbackHandler([DefaultFlowCallback(), Broken()], None, None, None, None)
    args = TrainingArguments(output_dir="unused", use_cpu=True, report_to=[])
    with caplog.at_level(logging.WARNING, logger="vlexp"):
        handler.on_log(args, TrainerState(), TrainerControl(), logs={"loss": 1.0})
        handler.on_log(args, TrainerState(), TrainerControl(), logs={"loss": 2.0})
    warnings = [r.getMessage() for r in caplog.records if r.name == "vlexp"]
    assert len(warnings) == 1 and "Broken.on_log failed (ConnectionError" in warnings[0]


def test_log_row_reaches_every_callback_and_keeps_the_pending_training_row():
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
    from transformers.trainer_callback import CallbackHandler, DefaultFlowCallback

    class Recorder(TrainerCallback):
        rows: list = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            self.rows.append(dict(logs))

    handler = CallbackHandler([DefaultFlowCallback(), Recorder()], None, None, None, None)
    state, control = TrainerState(global_step=3), TrainerControl(should_log=True)
    args = TrainingArguments(output_dir="unused", use_cpu=True, report_to=[])
    patches.log_row(SimpleNamespace(callback_handler=handler), args, state, control, {"eval_x": 1})
    assert Recorder.rows == [{"eval_x": 1}]
    assert state.log_history == [{"eval_x": 1, "step": 3}]
    _contract(control.should_log, "log_row", "control.should_log was not kept")


def test_grpo_trainer_keeps_logged_prompts_where_the_text_mixin_reads_them():
    from trl import GRPOTrainer

    source = inspect.getsource(GRPOTrainer)
    _contract(
        'self._logs["prompt"]' in source or "self._logs = {" in source,
        "TextPromptsMixin",
        "GRPOTrainer no longer keeps logged prompts in self._logs['prompt']",
    )
    _contract(
        "logs" in inspect.signature(GRPOTrainer.log).parameters,
        "TextPromptsMixin",
        "GRPOTrainer.log(logs, ...) changed",
    )


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("_generate_and_score_completions", ["self", "inputs"]),
        ("_compute_loss", ["self", "model", "inputs"]),
        ("_get_per_token_logps_and_entropies", ["self", "model", "input_ids"]),
    ],
)
def test_grpo_trainer_private_methods_the_video_mixin_extends(method, params):
    from trl import GRPOTrainer

    found = getattr(GRPOTrainer, method, None)
    _contract(found is not None, "VideoGRPOMixin", f"GRPOTrainer.{method} is gone")
    names = list(inspect.signature(found).parameters)
    _contract(names[: len(params)] == params, "VideoGRPOMixin", f"{method}{tuple(names)}")


def test_grpo_trainer_class_keeps_the_user_class_and_adds_the_mixins():
    from trl import GRPOTrainer

    class Mine(GRPOTrainer):
        pass

    plain = patches.grpo_trainer_class(Mine, str)
    assert issubclass(plain, Mine) and plain.__name__ == "Mine"
    assert patches.TextPromptsMixin in plain.__mro__ and patches.VideoGRPOMixin not in plain.__mro__
    carrier = SimpleNamespace(forward_keys=())
    with_video = patches.grpo_trainer_class(Mine, str, carrier)
    assert with_video.video_carrier is carrier and patches.VideoGRPOMixin in with_video.__mro__


def test_qwen_vl_utils_reader_globals_exist():
    from qwen_vl_utils import vision_process

    for name in ("FORCE_QWENVL_VIDEO_READER", "VIDEO_READER_BACKENDS", "get_video_reader_backend"):
        _contract(hasattr(vision_process, name), "qwen_vl_utils_video_reader", f"{name} is gone")
    _contract(
        "torchvision" in vision_process.VIDEO_READER_BACKENDS,
        "qwen_vl_utils_video_reader",
        "no torchvision reader to replace",
    )
    _contract(
        hasattr(vision_process.get_video_reader_backend, "cache_clear"),
        "qwen_vl_utils_video_reader",
        "get_video_reader_backend is no longer cached",
    )


def test_installed_trl_is_the_minor_version_the_patches_were_written_for():
    from importlib.metadata import version

    installed = ".".join(version("trl").split(".")[:2])
    _contract(installed == patches.TESTED["trl"], "TESTED", f"trl {installed} is installed")
