"""Faults mid-run: a NaN loss stops (or skips) cleanly; a failing logger never stops training."""

from __future__ import annotations

import math

import pytest

from tests.helpers import compose, read_metrics, run_cli

NAN_STEP = 3


def _nan_at_step(monkeypatch, step: int) -> None:
    """Make the policy's final hidden states NaN on the `step`-th training forward (SFT: one
    per step). TRL's SFT fuses the lm_head into the loss, so the hook sits on the last norm."""
    import vlexp.recipe.run

    real_load = vlexp.recipe.run.load_model
    calls = {"n": 0}

    def poison(module, inputs, output):
        if not module.training:
            return output
        calls["n"] += 1
        return output * float("nan") if calls["n"] == step else output

    def load_model(model_cfg, memory_cfg, *composed):
        model = real_load(model_cfg, memory_cfg, *composed)
        model.model.language_model.norm.register_forward_hook(poison)
        return model

    monkeypatch.setattr(vlexp.recipe.run, "load_model", load_model)


def _sft_cfg(*extra: str):
    return compose(
        [
            "algo=sft",
            "train.max_steps=5",
            "train.save_steps=1",
            "train.per_device_train_batch_size=2",
            *extra,
        ]
    )


def _weights(checkpoint):
    from safetensors.torch import load_file

    return load_file(str(checkpoint / "model.safetensors"))


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)


def _finite(weights: dict) -> bool:
    return all(bool(t.isfinite().all()) for t in weights.values())


def test_nan_loss_stops_with_the_step_and_the_last_good_checkpoint(
    tmp_path, tiny_model, shapes_dir, monkeypatch
):
    from vlexp.recipe.faults import TrainingStopped
    from vlexp.recipe.run import train

    _nan_at_step(monkeypatch, NAN_STEP)
    with pytest.raises(TrainingStopped) as caught:
        train(_sft_cfg(), tmp_path)
    message = str(caught.value)
    assert f"gradient norm nan at step {NAN_STEP} (train.on_nan=stop)" in message
    assert f"{tmp_path}/checkpoint-{NAN_STEP} holds the last good weights" in message
    checkpoints = sorted(p.name for p in tmp_path.glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-1", "checkpoint-2", "checkpoint-3"]
    good, saved = _weights(tmp_path / "checkpoint-2"), _weights(tmp_path / "checkpoint-3")
    assert _finite(saved) and _same(good, saved)  # the NaN update was never applied
    assert not _same(_weights(tmp_path / "checkpoint-1"), good)  # while good steps did train
    assert not (tmp_path / "final").exists()


def test_nan_loss_skip_drops_that_update_and_goes_on(tmp_path, tiny_model, shapes_dir, monkeypatch):
    from vlexp.recipe.run import train

    _nan_at_step(monkeypatch, NAN_STEP)
    train(_sft_cfg("train.on_nan=skip"), tmp_path)
    assert _same(_weights(tmp_path / "checkpoint-2"), _weights(tmp_path / "checkpoint-3"))
    after = _weights(tmp_path / "checkpoint-4")
    assert _finite(after) and not _same(_weights(tmp_path / "checkpoint-3"), after)
    assert (tmp_path / "final" / "model.safetensors").is_file()
    rows = read_metrics(tmp_path)
    assert [row["step"] for row in rows] == [1, 2, 3, 4, 5]
    # The skipped step stays visible in the log: its loss and gradient norm are written as "nan".
    assert rows[NAN_STEP - 1]["grad_norm"] == "nan" and rows[NAN_STEP - 1]["loss"] == "nan"
    assert all(math.isfinite(row["grad_norm"]) for i, row in enumerate(rows) if i != NAN_STEP - 1)


def test_a_logger_failing_mid_run_never_stops_training(
    tmp_path, tiny_model, shapes_dir, monkeypatch, caplog
):
    import wandb.sdk.wandb_run

    from vlexp.recipe.run import train

    real_log = wandb.sdk.wandb_run.Run.log
    calls = {"n": 0}

    def flaky_log(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] >= 2:
            raise ConnectionError("api.wandb.ai unreachable")
        return real_log(self, *args, **kwargs)

    monkeypatch.setattr(wandb.sdk.wandb_run.Run, "log", flaky_log)
    cfg = _sft_cfg("logger=wandb", "logger.mode=offline", "train.save_steps=100")
    with caplog.at_level("WARNING", logger="vlexp"):
        summary = train(cfg, tmp_path)
    wandb.finish()
    assert calls["n"] == 2  # after its first failure the logger is switched off, not retried
    assert (
        "WandbCallback.on_log failed (ConnectionError: api.wandb.ai unreachable); "
        "WandbCallback is switched off for this run" in caplog.text
    )
    rows = read_metrics(tmp_path)
    assert [row["step"] for row in rows] == [1, 2, 3, 4, 5]
    assert all(math.isfinite(row["loss"]) for row in rows) and summary["step"] == 5
    assert (tmp_path / "final" / "model.safetensors").is_file()


def test_a_diverging_run_exits_with_the_step_and_keeps_the_last_good_checkpoint(
    tmp_path, tiny_model
):
    """A real divergence through the command line: learning rate 1e30 makes step 2 NaN."""
    run_dir = tmp_path / "run"
    args = ("algo=sft", "train.max_steps=3", "train.learning_rate=1e30", "train.save_steps=1")
    result = run_cli(*args, f"hydra.run.dir={run_dir}", timeout=300)
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "vlexp: training stopped: gradient norm nan at step 2 (train.on_nan=stop). The update "
            f"of step 2 was not applied: {run_dir}/checkpoint-2 holds the last good weights"
        )
    )
    assert _same(_weights(run_dir / "checkpoint-1"), _weights(run_dir / "checkpoint-2"))
    assert _finite(_weights(run_dir / "checkpoint-2"))
    rows = read_metrics(run_dir)
    assert [row["step"] for row in rows] == [1, 2] and rows[1]["loss"] == "nan"


def test_unwritable_run_dir_fails_at_start(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run_cli(f"hydra.run.dir={blocker}/run", timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"vlexp: run dir {blocker}/run cannot be created: {blocker} is a file, not a folder; "
        f"choose another with hydra.run.dir=DIR (now {blocker}/run)"
    )


def test_full_disk_is_reported_by_the_write_test(tmp_path, monkeypatch):
    import errno

    from vlexp.recipe import rundir

    rundir.check_writable(tmp_path / "ok")  # creates the dir, leaves no probe behind
    assert list((tmp_path / "ok").iterdir()) == []

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rundir.Path, "open", full)
    with pytest.raises(
        rundir.RunDirError, match=r"is not writable: the disk is full; choose another"
    ):
        rundir.check_writable(tmp_path / "full")
