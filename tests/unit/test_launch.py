"""Launch, DeepSpeed presets, resume resolution and their config checks (no model, no ranks)."""

from __future__ import annotations

import json
import os
import re
import signal

import pytest
from omegaconf import OmegaConf

from tests.helpers import compose, run_cli
from vlexp.recipe import launch
from vlexp.validate import ConfigError, validate


def test_deepspeed_presets_compose_with_lora_and_grad_ckpt_in_any_order():
    for memory in ("[lora,grad_ckpt,zero3]", "[zero3,grad_ckpt,lora]"):
        cfg = compose([f"memory={memory}"])
        assert cfg.memory.peft.r == 16
        assert cfg.memory.gradient_checkpointing is True
        assert cfg.memory.deepspeed.zero_optimization.stage == 3
    assert compose(["memory=zero2"]).memory.deepspeed.zero_optimization.stage == 2
    offload = compose(["memory=zero3_offload"]).memory.deepspeed.zero_optimization
    assert offload.offload_param.device == "cpu" and offload.offload_optimizer.device == "cpu"


def test_zero_presets_leave_batch_and_precision_to_the_trainer_args():
    for name in ("zero2", "zero3"):
        ds = compose([f"memory={name}"]).memory.deepspeed
        assert ds.train_micro_batch_size_per_gpu == "auto" and ds.bf16.enabled == "auto"
        # No optimizer block: torch AdamW, no 2-minute DeepSpeed CPU Adam build.
        assert "optimizer" not in ds


def test_launch_is_wanted_for_accelerate_several_processes_or_deepspeed():
    assert not launch.wanted(compose([]))
    assert launch.wanted(compose(["launcher=accelerate"]))
    assert launch.wanted(compose(["launcher.num_processes=2"]))
    assert launch.wanted(compose(["memory=zero3"]))


def test_accelerate_command_runs_the_worker_on_the_resolved_file(tmp_path):
    cfg = compose(["launcher=accelerate", "launcher.num_processes=4"])
    cmd = launch.accelerate_command(cfg.launcher, tmp_path / "config.resolved.yaml")
    assert cmd[-3:] == ["-m", "vlexp.worker", str(tmp_path / "config.resolved.yaml")]
    assert "--multi_gpu" in cmd and "--cpu" not in cmd
    assert cmd[cmd.index("--num_processes") + 1] == "4"
    # A free port picked now, so concurrent jobs never share a rendezvous.
    ports = {
        launch.accelerate_command(cfg.launcher, "c.yaml")[cmd.index("--main_process_port") + 1]
        for _ in range(3)
    }
    assert all(1024 <= int(port) < 65536 for port in ports)
    assert "--main_process_ip" not in cmd


def test_ranks_get_time_to_checkpoint_after_sigterm():
    cfg = compose(["launcher=accelerate", "launcher.shutdown_timeout=240"])
    assert launch.rank_environment(cfg.launcher)["TORCH_ELASTIC_SHUTDOWN_TIMEOUT"] == "240"


def test_multi_node_keys_pass_through():
    cfg = compose(
        [
            "launcher=accelerate",
            "launcher.num_processes=16",
            "launcher.num_machines=2",
            "launcher.machine_rank=1",
            "launcher.main_process_ip=10.0.0.7",
            "launcher.main_process_port=29555",
        ]
    )
    validate(cfg)
    cmd = launch.accelerate_command(cfg.launcher, "c.yaml")
    flags = dict(zip(cmd, cmd[1:], strict=False))
    assert flags["--num_machines"] == "2" and flags["--machine_rank"] == "1"
    assert flags["--main_process_ip"] == "10.0.0.7" and flags["--main_process_port"] == "29555"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["launcher.num_machines=2"], "needs launcher.main_process_ip"),
        (["launcher.num_processes=3", "launcher.num_machines=2"], "multiple of launcher.num_machines"),
        (
            ["launcher.num_machines=2", "launcher.machine_rank=2", "launcher.main_process_ip=h",
             "launcher.main_process_port=1"],
            "machine_rank=2 must be in 0..1",
        ),
        (
            ["memory=[lora,zero3_offload]", "+memory.quantization.load_in_4bit=true"],
            "use memory=[qlora,zero3] or memory=[qlora,zero2] instead of zero3_offload",
        ),
        (
            ["memory=[lora,zero3]", "+memory.quantization.load_in_4bit=true"],
            "set memory.quantization.bnb_4bit_quant_storage=float32",
        ),
        (
            ["memory=zero3", "algo.args.use_vllm=true", "+algo.args.ds3_gather_for_generation=false"],
            "set algo.args.ds3_gather_for_generation=true, or use memory=zero2",
        ),
        (["resume=/nowhere/checkpoint-3"], "resume=/nowhere/checkpoint-3: not a checkpoint (it does not exist)"),
    ],
)  # fmt: skip
def test_incompatible_picks_say_what_to_use_instead(overrides, message):
    cfg = compose(["launcher=accelerate", *overrides])
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(cfg)


def test_qlora_under_zero3_passes_with_matching_storage():
    from vlexp.validate import check_deepspeed

    cfg = compose(
        [
            "memory=[lora,zero3]",
            "+memory.quantization.load_in_4bit=true",
            "+memory.quantization.bnb_4bit_quant_storage=float32",
        ]
    )
    # (On this CPU machine validate() still refuses QLoRA itself: no CUDA/bitsandbytes.)
    assert check_deepspeed(cfg) == []


def test_config_error_stops_before_any_model_loads(tmp_path):
    result = run_cli("resume=/nowhere/checkpoint-3", f"hydra.run.dir={tmp_path}", timeout=120)
    assert result.returncode == 1
    assert "vlexp: config error: resume=/nowhere/checkpoint-3: not a checkpoint" in result.stderr
    assert not (tmp_path / "metrics.jsonl").exists()


def test_resume_auto_picks_the_newest_complete_checkpoint(tmp_path):
    from vlexp.recipe.resume import checkpoint_to_resume

    assert checkpoint_to_resume("auto", tmp_path) is None  # first start: nothing to resume
    for step in (2, 10, 4):
        (tmp_path / f"checkpoint-{step}").mkdir()
        state = json.dumps({"global_step": step})
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    (tmp_path / "checkpoint-12").mkdir()  # cut off mid-save: no trainer_state.json
    assert checkpoint_to_resume("auto", tmp_path) == str(tmp_path / "checkpoint-10")
    assert checkpoint_to_resume(None, tmp_path) is None
    given = tmp_path / "checkpoint-4"
    assert checkpoint_to_resume(str(given), tmp_path) == str(given)


def test_resuming_replaces_metrics_logged_after_the_checkpoint(tmp_path):
    from vlexp.recipe.resume import trim_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": s}) + "\n" for s in (1, 2, 3, 4)))
    trim_metrics(path, 2)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2]


def test_sigterm_asks_every_rank_to_save_and_stop(tmp_path):
    import os

    from transformers import TrainerControl, TrainerState, TrainingArguments

    from vlexp.recipe.resume import SaveOnSigterm

    callback = SaveOnSigterm(tmp_path)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    state, control = TrainerState(), TrainerControl()
    state.global_step = 3
    previous = signal.getsignal(signal.SIGTERM)
    callback.on_train_begin(args, state, control)
    try:
        callback.on_step_end(args, state, control)
        assert not control.should_save and callback.stopped_at is None
        os.kill(os.getpid(), signal.SIGTERM)  # handled: the test process lives on
        callback.on_step_end(args, state, control)
        assert control.should_save and control.should_training_stop
        assert callback.stopped_at == 3
    finally:
        callback.on_train_end(args, state, control)
    assert signal.getsignal(signal.SIGTERM) == previous


def test_resolved_config_holds_the_launcher_and_resume_keys(tmp_path):
    cfg = compose(["launcher=accelerate", "resume=auto"])
    assert cfg.resume == "auto" and cfg.launcher.main_process_port is None
    assert OmegaConf.to_yaml(cfg, resolve=True)


def test_parent_outlives_ranks_that_outlive_their_agent():
    import subprocess
    import time

    # Like torch's agent: the "rank" runs in a session of its own and outlives the "agent".
    agent = subprocess.Popen(["bash", "-c", "setsid sleep 2 & sleep 0.5"], start_new_session=True)
    time.sleep(0.2)
    ranks = launch._descendants(agent.pid)
    assert len(ranks) >= 1 and agent.pid not in ranks
    agent.wait()
    started = time.monotonic()
    launch._wait_for_exit(ranks | {agent.pid}, timeout=20)
    assert 0.5 < time.monotonic() - started < 15


def _agent_summary(tmp_path) -> str:
    """What torch's agent prints when rank 1 is SIGKILLed and rank 0 then fails too."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    missing = str(tmp_path / "no-error-file.json")
    failures = {
        1: ProcessFailure(local_rank=1, pid=4242, exitcode=-9, error_file=missing),
        0: ProcessFailure(local_rank=0, pid=4241, exitcode=1, error_file=missing),
    }
    failures[1].timestamp, failures[0].timestamp = 100, 105  # rank 1 failed first
    rank0_error = "RuntimeError: Connection reset by peer\n"
    return rank0_error + ChildFailedError("vlexp.worker", failures).format_msg()


def test_the_rank_that_died_first_is_named_with_its_signal(tmp_path):
    assert launch.root_cause(_agent_summary(tmp_path)) == (
        "rank 1 was killed by SIGKILL (probably out of host memory: the kernel's OOM killer, "
        "or the job's memory limit; see `dmesg` or the scheduler's log)"
    )
    single = "subprocess.CalledProcessError: Command '[...]' died with <Signals.SIGSEGV: 11>."
    assert launch.root_cause(single).startswith("rank 0 was killed by SIGSEGV")
    assert launch.root_cause("Traceback ...\nValueError: x") is None


def test_the_parent_names_the_dead_rank_first(tmp_path, monkeypatch, capfd):
    import sys

    script = tmp_path / "agent.py"
    script.write_text(f"import sys\nsys.stderr.write({_agent_summary(tmp_path)!r})\nsys.exit(1)\n")
    monkeypatch.setattr(launch, "accelerate_command", lambda *a: [sys.executable, str(script)])
    cfg = compose(["launcher=accelerate"])
    with pytest.raises(launch.RanksFailed) as caught:
        launch.launch(cfg, tmp_path / "config.resolved.yaml")
    assert str(caught.value).startswith(
        "vlexp: rank 1 was killed by SIGKILL (probably out of host memory"
    )
    assert "the other ranks' errors follow from it" in str(caught.value)
    assert "Connection reset by peer" in capfd.readouterr().err  # passed through as it came


def test_the_shutdown_watchdog_ends_with_training_and_fires_only_when_stuck(tmp_path, monkeypatch):
    """The watchdog a SIGTERM arms exits a run stuck in its step, and nothing else: it used
    to outlive training and end whatever the process did 90 s later (here: the test run)."""
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from vlexp.recipe import resume

    left = []
    monkeypatch.setattr(resume, "_leave", lambda code, message: left.append(code))
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    for stuck in (False, True):
        callback = resume.SaveOnSigterm(tmp_path, shutdown_timeout=0.5)
        callback.on_train_begin(args, TrainerState(), TrainerControl())
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # handled: arms the watchdog
        finally:
            if not stuck:
                callback.on_train_end(args, TrainerState(), TrainerControl())
        callback._watchdog.join(timeout=5)
        if stuck:
            callback.on_train_end(args, TrainerState(), TrainerControl())
        assert left == ([143] if stuck else []), stuck
