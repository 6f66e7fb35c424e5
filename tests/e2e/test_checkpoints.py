"""Checkpoints are whole or absent: written aside and renamed; resume skips damaged ones;
a full disk stops with a message and leaves the previous checkpoint usable."""

from __future__ import annotations

import errno
import json
import logging
import shutil

import pytest

from tests.helpers import compose


def _sft(*extra: str):
    return compose(
        [
            "algo=sft",
            "train.max_steps=2",
            "train.save_steps=1",
            "train.per_device_train_batch_size=2",
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model, shapes_dir):
    """A 2-step SFT run with a checkpoint per step and a hub token in the args."""
    from vlexp.recipe.run import train

    run_dir = tmp_path_factory.mktemp("run")
    train(_sft("+algo.args.hub_token=hf_SECRETsecret123456"), run_dir)
    return run_dir


def test_checkpoints_are_published_whole_and_nothing_partial_stays(trained):
    from vlexp.recipe import checkpoints

    names = sorted(p.name for p in trained.iterdir() if "checkpoint" in p.name)
    assert names == ["checkpoint-1", "checkpoint-2"]
    for name in names:
        assert checkpoints.problem(trained / name) is None
        state = json.loads((trained / name / "trainer_state.json").read_text())
        assert state["global_step"] == int(name.split("-")[1])


def test_training_args_bin_holds_no_secret(trained):
    import torch

    for folder in ("checkpoint-1", "checkpoint-2", "final"):
        raw = (trained / folder / "training_args.bin").read_bytes()
        assert b"hf_SECRETsecret123456" not in raw, folder
        args = torch.load(trained / folder / "training_args.bin", weights_only=False)
        assert args.hub_token == "<redacted>" and args.max_steps == 2


def _damage(checkpoint, how: str) -> None:
    target = {
        "empty state": "trainer_state.json",
        "cut state": "trainer_state.json",
        "cut weights": "model.safetensors",
        "empty optimizer": "optimizer.pt",
    }[how]
    path = checkpoint / target
    data = path.read_bytes()
    path.write_bytes(b"" if how.startswith("empty") else data[: len(data) // 2])


@pytest.mark.parametrize("how", ["empty state", "cut state", "cut weights", "empty optimizer"])
def test_resume_auto_falls_back_to_the_previous_whole_checkpoint(trained, tmp_path, how, caplog):
    from vlexp.recipe.resume import checkpoint_to_resume

    run_dir = tmp_path / "run"
    for name in ("checkpoint-1", "checkpoint-2"):
        shutil.copytree(trained / name, run_dir / name)
    _damage(run_dir / "checkpoint-2", how)
    with caplog.at_level(logging.WARNING, logger="vlexp"):
        chosen = checkpoint_to_resume("auto", run_dir)
    assert chosen == str(run_dir / "checkpoint-1")
    assert f"{run_dir / 'checkpoint-2'} cannot be resumed from: " in caplog.text


def test_resume_from_a_named_damaged_checkpoint_says_why(trained, tmp_path):
    from vlexp.recipe.resume import checkpoint_to_resume
    from vlexp.recipe.stops import TrainingStopped

    shutil.copytree(trained / "checkpoint-2", tmp_path / "checkpoint-2")
    _damage(tmp_path / "checkpoint-2", "cut weights")
    with pytest.raises(TrainingStopped, match=r"cannot resume from it: model.safetensors: dam"):
        checkpoint_to_resume(str(tmp_path / "checkpoint-2"), tmp_path)


def test_a_full_disk_during_a_save_stops_and_keeps_the_previous_checkpoint(
    tmp_path, tiny_model, shapes_dir, monkeypatch
):
    import torch

    from vlexp.recipe import checkpoints
    from vlexp.recipe.run import train
    from vlexp.recipe.stops import TrainingStopped

    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        if "checkpoint-2" in str(f) and str(f).endswith("optimizer.pt"):
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(TrainingStopped) as caught:
        train(_sft(), tmp_path)
    assert str(caught.value).startswith(
        f"disk full while saving checkpoint-2 in {tmp_path}: free space ("
    )
    assert f"{tmp_path / 'checkpoint-1'} is intact: continue from it with resume=auto" in str(
        caught.value
    )
    assert sorted(p.name for p in tmp_path.iterdir() if "checkpoint" in p.name) == ["checkpoint-1"]
    assert checkpoints.problem(tmp_path / "checkpoint-1") is None


def test_metrics_restart_from_step_0_and_a_stopped_summary_row_are_trimmed(tmp_path):
    from vlexp.recipe.resume import trim_metrics

    path = tmp_path / "metrics.jsonl"
    rows = [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.9}, {"step": 2, "train_runtime": 3}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 3, "lo')
    trim_metrics(path, 2)
    assert [json.loads(line) for line in path.read_text().splitlines()] == rows[:2]
    trim_metrics(path, 0)  # killed before checkpoint-1: the new run starts the file again
    assert path.read_text() == ""
