"""One contract test per patch in vlexp.patches: each fails with a message naming the patch
when a TRL, transformers or qwen-vl-utils upgrade changes the thing it reaches into.

Run these first when moving to a new release (docs/development.md: "Moving to a new TRL release")."""

from __future__ import annotations

import inspect
import logging
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.helpers import REPO, free_port
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


def test_experts_implementation_like_answers_for_a_runtime_value_head():
    from transformers.models.qwen3_vl_moe.modeling_qwen3_vl_moe import (
        Qwen3VLMoeModel,
        Qwen3VLMoePreTrainedModel,
    )

    _contract(
        Qwen3VLMoeModel._can_set_experts_implementation(),
        "experts_implementation_like",
        "Qwen3VLMoeModel no longer says it can set its experts implementation",
    )
    probe = type("VlexpProbeForRewardModel", (Qwen3VLMoePreTrainedModel,), {})
    probe.__module__ = "vlexp.algorithms.reward_model"  # where the value heads are built
    probe._can_set_experts_implementation_cached_value = None  # not the base class's cache
    _contract(
        not probe._can_set_experts_implementation(),
        "experts_implementation_like",
        "transformers no longer refuses a class whose module lacks the decorator (drop it)",
    )
    probe._can_set_experts_implementation_cached_value = None
    patches.experts_implementation_like(probe, Qwen3VLMoeModel)
    _contract(
        probe._can_set_experts_implementation(),
        "experts_implementation_like",
        "_can_set_experts_implementation_cached_value is no longer read",
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

    from vlexp.recipe.trainers import Parts, trainer_class

    plain = trainer_class(Mine, Parts())
    assert issubclass(plain, Mine) and plain.__name__ == "Mine"
    assert patches.TextPromptsMixin in plain.__mro__ and patches.VideoGRPOMixin not in plain.__mro__
    carrier = SimpleNamespace(forward_keys=())
    with_video = trainer_class(Mine, Parts(video_carrier=carrier))
    assert with_video.video_carrier is carrier and patches.VideoGRPOMixin in with_video.__mro__
    assert with_video.__name__ == "VideoMine"


def test_grpo_tool_loop_returns_the_failure_count_where_the_tool_mixin_adds_to_it():
    """ToolFailuresMixin adds the environments' message failures to the sixth value
    `_tool_call_loop` returns (TRL 1.16: tool_mask, completions, completion_ids, logprobs,
    tool_call_count, tool_failure_count, tool_images)."""
    from trl import GRPOTrainer

    source = inspect.getsource(GRPOTrainer._tool_call_loop)
    returned = source[source.rindex("return ") :].split("\n")[0]
    names = [n.strip() for n in returned[len("return ") :].split(",")]
    _contract(
        len(names) == 7 and names[5] == "tool_failure_count",
        "ToolFailuresMixin",
        f"GRPOTrainer._tool_call_loop now returns ({', '.join(names)})",
    )
    generate = inspect.getsource(GRPOTrainer._generate)
    _contract(
        "tools/failure_frequency" in generate
        and "self.environments" in inspect.getsource(GRPOTrainer),
        "ToolFailuresMixin",
        "TRL no longer logs tools/failure_frequency or keeps self.environments",
    )
    from vlexp.recipe.trainers import Parts, trainer_class

    mixed = trainer_class(GRPOTrainer, Parts(tools=True))
    assert mixed.__mro__[1] is patches.ToolFailuresMixin


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


@pytest.mark.parametrize(
    "path", ["trl:GRPOTrainer", "trl:RLOOTrainer", "vlexp.algorithms.ppo:PPOTrainer"]
)
def test_rollout_trainers_prepare_inputs_inside_training_step(path):
    """PhaseTimersMixin (recipe.perf): update = training_step - _prepare_inputs holds while the rollout
    (generation, rewards, log-probs) happens in `_prepare_inputs`, called from training_step."""
    import importlib

    import transformers

    module, _, name = path.partition(":")
    cls = getattr(importlib.import_module(module), name)
    from vlexp.recipe.perf import ROLLOUT_METHODS

    for method in ROLLOUT_METHODS:
        _contract(
            callable(getattr(cls, method, None)), "PhaseTimersMixin", f"{path}.{method} is gone"
        )
    base = inspect.getsource(transformers.Trainer.training_step)
    _contract(
        "self._prepare_inputs(" in base,
        "PhaseTimersMixin",
        "Trainer.training_step no longer prepares inputs",
    )
    own = inspect.getsource(cls.training_step)
    _contract(
        "super().training_step(" in own or "self._prepare_inputs(" in own,
        "PhaseTimersMixin",
        f"{path}.training_step bypasses _prepare_inputs",
    )


@pytest.mark.parametrize("name", ["GRPOTrainer", "RLOOTrainer"])
def test_trl_generation_goes_through_the_models_generate(name):
    """The phase clock and the rollout engine sit in the policy class's `generate`
    (vlexp.rollout.PolicyGenerate): TRL's HF path must call it."""
    import trl

    source = inspect.getsource(getattr(trl, name))
    _contract(
        "unwrapped_model.generate(" in source,
        "PhaseTimersMixin",
        f"{name} no longer calls model.generate",
    )


def test_trl_profiling_still_bypasses_the_logs():
    """TRL's own phase timings go to W&B/MLflow only; the day they reach `logs`, vlexp's
    timers could give way to them."""
    from trl.extras import profiling

    source = inspect.getsource(profiling.ProfilingContext._log_metrics)
    _contract(
        "wandb.log(" in source and "logs" not in source,
        "PhaseTimersMixin",
        "TRL's profiling now logs elsewhere",
    )


def test_transformers_dropped_the_per_model_output_classes_liger_imports():
    """liger_output_classes: while transformers returns MultimodalCausalLMOutputWithPast,
    liger-kernel 0.8.5 needs the alias; with the old names back the patch does nothing."""
    from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as qwen

    forward = inspect.signature(qwen.Qwen2_5_VLForConditionalGeneration.forward)
    _contract(
        "MultimodalCausalLMOutputWithPast" in str(forward.return_annotation),
        "liger_output_classes",
        "Qwen2.5-VL no longer returns MultimodalCausalLMOutputWithPast",
    )
    patches.liger_output_classes()
    assert qwen.Qwen2_5_VLCausalLMOutputWithPast is qwen.MultimodalCausalLMOutputWithPast
    assert patches.liger_output_classes() == []  # idempotent


def test_liger_qwen_vl_patches_import_after_the_alias():
    pytest.importorskip("liger_kernel")
    patches.liger_output_classes()
    from liger_kernel.transformers.model.qwen2_5_vl import lce_forward  # noqa: F401
    from liger_kernel.transformers.model.qwen2_vl import lce_forward as qwen2  # noqa: F401


def test_save_checkpoint_writes_under_get_output_dir_and_rotation_takes_our_keywords():
    """AtomicCheckpoints (recipe.checkpoints) answers `_get_output_dir` with the staging
    folder for one `_save_checkpoint` call."""
    from transformers import Trainer
    from transformers.trainer_utils import rotate_checkpoints
    from trl import GRPOTrainer

    name = "AtomicCheckpoints"
    source = inspect.getsource(Trainer._save_checkpoint)
    _contract(
        "self._get_output_dir(trial=trial)" in source
        and 'f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"' in source
        and "rotate_checkpoints(" in source,
        name,
        "Trainer._save_checkpoint no longer writes checkpoint-N under _get_output_dir(trial)",
    )
    grpo = inspect.getsource(GRPOTrainer._save_checkpoint)
    _contract(
        "super()._save_checkpoint(model, trial)" in grpo
        and "self._get_output_dir(trial=trial)" in grpo,
        name,
        "GRPOTrainer._save_checkpoint no longer calls the Trainer's and writes under _get_output_dir",
    )
    params = set(inspect.signature(rotate_checkpoints).parameters)
    _contract(
        {"output_dir", "save_total_limit", "best_model_checkpoint", "use_mtime"} <= params,
        name,
        "transformers.trainer_utils.rotate_checkpoints changed its keywords",
    )


@pytest.mark.parametrize("path", ["trl.GRPOTrainer", "trl.RLOOTrainer"])
def test_trl_log_prob_passes_still_lack_batch_num_images(path):
    """ImageCountMixin exists because TRL 1.16's log-prob pass has a fixed signature without
    LlavaOnevisionProcessor's `batch_num_images` (a TypeError at the first GRPO step without
    the mixin); when TRL takes it, the mixin is due for removal."""
    from importlib import import_module

    module, _, name = path.rpartition(".")
    method = getattr(import_module(module), name)._get_per_token_logps_and_entropies
    params = inspect.signature(method).parameters
    assert "batch_num_images" not in params and "image_sizes" in params
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def test_image_count_mixin_drops_one_image_per_prompt_and_refuses_several():
    class Base:
        def _get_per_token_logps_and_entropies(self, model, ids, **kwargs):
            return kwargs

    from trl import GRPOTrainer, RLOOTrainer

    from vlexp.recipe.trainers import Parts, trainer_class

    # The run's trainer classes carry the mixin where TRL drops batch_num_images.
    for trl_class in (GRPOTrainer, RLOOTrainer):
        assert patches.ImageCountMixin in trainer_class(trl_class, Parts()).__mro__
    cls = type("Base", (patches.ImageCountMixin, Base), {})
    trainer = cls()
    assert trainer._get_per_token_logps_and_entropies(None, None, batch_num_images=[1, 1]) == {}
    assert trainer._get_per_token_logps_and_entropies(None, None, image_sizes=1) == {
        "image_sizes": 1
    }
    with pytest.raises(ValueError, match="a prompt with 2 images on LLaVA-OneVision"):
        trainer._get_per_token_logps_and_entropies(None, None, batch_num_images=[1, 2])


KERNELS_UNDER_ZERO_INIT = """
import os, sys, torch.distributed as dist, deepspeed
from transformers import AutoConfig, GenerationMixin, PreTrainedModel  # loaded, as in from_pretrained
from vlexp import patches
from vlexp.models import tiny

path = str(tiny.ensure("internvl"))  # InternVL3.5: a Qwen3 language model in a sub-config
if sys.argv[1] == "imported-first":
    patches.import_model_modules(path)
dist.init_process_group("gloo", rank=0, world_size=1)
zero3 = {"zero_optimization": {"stage": 3}, "train_micro_batch_size_per_gpu": 1}
with deepspeed.zero.Init(config_dict_or_path=zero3):  # as from_pretrained enters it under ZeRO-3
    from transformers.models.qwen3 import modeling_qwen3
text = AutoConfig.from_pretrained(path).text_config
attention = modeling_qwen3.Qwen3Attention(text, layer_idx=0)  # the next model: TRL's reference
print("kernel_funcs" if "_kernel_funcs" in attention.__dict__ else "lost")
"""


@pytest.mark.parametrize(
    "order, expected", [("imported-inside", "lost"), ("imported-first", "kernel_funcs")]
)
def test_import_model_modules_keeps_the_kernels_init_across_zero_init(order, expected):
    """The contract behind import_model_modules: a model module first imported inside
    DeepSpeed's zero.Init loses the `kernels` __init__ on exit (the reference model of a 2-rank
    ZeRO-3 GRPO on InternVL failed with "no attribute '_kernel_funcs'"); imported before, it
    keeps it. When "imported-inside" stops printing "lost", the shim can go."""
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    env |= {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", KERNELS_UNDER_ZERO_INIT, order],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == expected, result.stdout[-2000:]


STACK_CHUNKS = """
import resource
from vlexp import patches

def down(n):
    return 0 if n == 0 else down(n - 1)

def oscillate():  # a loop whose calls cross the depths of several 16 KiB chunks
    for depth in range(0, 300, 3):
        for _ in range(20):
            down(depth)

def page_faults(fn):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    fn()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

oscillate()
print(page_faults(oscillate), page_faults(lambda: patches.in_one_stack_chunk(oscillate)))
"""


def test_in_one_stack_chunk_keeps_a_deep_loop_from_remapping_the_frame_stack():
    """The contract behind in_one_stack_chunk: CPython maps a fresh data-stack chunk (page
    faults on first touch) each time a call crosses into one and unmaps it on the way back; a
    frame with a large declared stack gets a chunk big enough for everything below it."""
    result = subprocess.run(
        [sys.executable, "-c", STACK_CHUNKS], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    plain, roomy = (int(n) for n in result.stdout.split())
    _contract(plain > 500, "in_one_stack_chunk", f"the loop alone took {plain} page faults")
    _contract(roomy * 10 < plain, "in_one_stack_chunk", f"{roomy} page faults inside, {plain} out")


@pytest.mark.parametrize(
    "given",
    [["train.max_steps=3"], ["hydra.mode=MULTIRUN", "seed=3"], ["hydra.mode=RUN", "algo=sft"]],
)
def test_hydra_mode_known_is_what_hydra_s_own_get_mode_answers(given):
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.global_hydra import GlobalHydra

    from vlexp import overrides
    from vlexp.paths import config_dir

    checked = overrides.check(given)
    assert checked.line is None and checked.composed
    search = create_config_search_path(str(config_dir()))
    try:
        own = Hydra.create_main_hydra2(task_name="app", config_search_path=search)
        answer = own.get_mode(config_name="config", overrides=given)
    finally:
        GlobalHydra.instance().clear()
    _contract(
        answer == checked.mode,
        "hydra_mode_known",
        "Hydra's get_mode reads hydra.mode of the composed config",
    )


def test_hydra_main_takes_its_mode_from_get_mode_and_composes_once_less(tmp_path, monkeypatch):
    import hydra
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from vlexp.overrides import Checked

    (tmp_path / "config.yaml").write_text("a: 1\n")
    seen, compositions = [], []
    own_load = ConfigLoaderImpl.load_configuration

    def counted(self, *args, **kwargs):
        compositions.append(kwargs.get("run_mode"))
        return own_load(self, *args, **kwargs)

    monkeypatch.setattr(ConfigLoaderImpl, "load_configuration", counted)

    @hydra.main(config_path=str(tmp_path), config_name="config", version_base="1.3")
    def app(cfg):
        seen.append(Path(HydraConfig.get().runtime.output_dir).parent.name)  # run or sweep

    quiet = ["hydra/job_logging=none", "hydra/hydra_logging=none"]
    dirs = [f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    monkeypatch.setattr(sys, "argv", ["app", "a=2", *quiet, *dirs])
    app()
    plain = len(compositions)
    with patches.hydra_mode_known(Checked(composed=True, mode=None)):
        app()
    shimmed = len(compositions) - plain
    with patches.hydra_mode_known(Checked(composed=True, mode=RunMode.MULTIRUN)):
        app()
    _contract(
        seen == [tmp_path.name, tmp_path.name, "sweep"],
        "hydra_mode_known",
        "_run_hydra runs the mode Hydra.get_mode returns",
    )
    _contract(plain == 2, "hydra_mode_known", "Hydra's main composes twice (get_mode, run)")
    assert shimmed == 1  # the run's own composition only
