"""SFT, GRPO and DPO on video records (short clips the test writes): the frames reach the vision
tower in every forward pass, the runs train, and mixed image/video data works."""

from __future__ import annotations

import math

from tests.helpers import build_trainer, read_metrics
from tests.video_data import mixed_records, video_jsonl, write_frames, write_mp4

BUDGET = ["data.video.min_pixels=3136", "data.video.max_pixels=12544"]


def video_records(folder) -> list[dict]:
    """Four records: 8-frame mp4 clips and a 4-frame PNG list, two questions."""
    write_mp4(folder / "a.mp4", count=8, width=56, height=56, fps=4)
    write_mp4(folder / "b.mp4", count=8, width=84, height=56, fps=4)
    frames = write_frames(folder / "c", count=4)
    records = []
    for video, answer in (("a.mp4", "right"), ("b.mp4", "right"), (frames, "right")):
        records.append(
            {
                "video": video,
                "prefix": "Where does the square go?",
                "solution": answer,
                "suffix": f"<think>I watch.</think><answer>{answer}</answer>",
                "rejected": "<think>I watch.</think><answer>left</answer>",
            }
        )
    return records + records[:1]


class VisionCalls:
    """Counts the rows the policy's vision tower embeds (images and video frames alike)."""

    def __init__(self, model) -> None:
        self.rows: list[int] = []
        model.model.visual.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs):
        self.rows.append(int(args[0].shape[0]))


def build_and_train(overrides: list[str], run_dir, tiny_model):
    """vlexp.recipe.run.build's trainer, with a hook on the vision tower before training starts."""
    trainer, _ = build_trainer(overrides, run_dir)
    model = trainer.model
    calls = VisionCalls(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if ".visual." in f".{n}"}
    trainer.train()
    changed = [n for n, p in model.named_parameters() if n in before and not p.equal(before[n])]
    return trainer, calls, changed, read_metrics(run_dir)


def test_sft_trains_on_video_files_and_frame_lists(tmp_path, tiny_model):
    path = video_jsonl(tmp_path, video_records(tmp_path))
    overrides = ["algo=sft", "data=jsonl", f"data.train={path}", *BUDGET]
    overrides += ["train.max_steps=3", "train.per_device_train_batch_size=2"]
    trainer, calls, changed, rows = build_and_train(overrides, tmp_path / "run", tiny_model)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(math.isfinite(r["loss"]) for r in rows)
    # Video-only data: every forward pass embedded frames (4 frames of 56x56 = 32 patch rows,
    # of 56x84 = 48), and the vision tower learned from them.
    assert len(calls.rows) == 3 and all(rows_ in (64, 80, 96) for rows_ in calls.rows)
    assert changed


def test_grpo_trains_on_video_records_with_a_reference_model(tmp_path, tiny_model):
    from vlexp.patches import VideoGRPOMixin

    path = video_jsonl(tmp_path, video_records(tmp_path))
    overrides = ["algo=grpo", "data=jsonl", f"data.train={path}", *BUDGET]
    overrides += ["train.max_steps=2", "train.per_device_train_batch_size=4"]
    overrides += ["algo.args.num_generations=2", "algo.args.max_completion_length=8"]
    overrides += ["algo.args.beta=0.04", "+algo.args.steps_per_generation=2"]
    trainer, calls, _, rows = build_and_train(overrides, tmp_path / "run", tiny_model)
    assert isinstance(trainer, VideoGRPOMixin) and type(trainer).__name__ == "VideoGRPOTrainer"
    assert [r["step"] for r in rows] == [1, 2]
    assert all(math.isfinite(r["loss"]) for r in rows) and "reward" in rows[0]
    # One generation batch of 8 rows (4 prompts x 2 generations) serves both steps. Patch rows
    # per clip: a.mp4 and the frame list 2x4x4 = 32, b.mp4 (56x84) 2x4x6 = 48; the batch holds
    # a, b, frames, a: 2 x 144 = 288. Generation embeds all 8 rows' videos; the old-policy
    # log-probs (steps_per_generation=2) take two chunks of 4 rows; each step's training pass
    # one chunk, in shuffled order. Any misaligned chunk would fail in the model with
    # "video features and video tokens do not match". (The reference model has its own tower.)
    assert calls.rows[0] == 288 and len(calls.rows) == 5
    assert sorted(calls.rows[1:3]) == sorted(calls.rows[3:5]) == [128, 160]


def test_grpo_runs_on_a_mixed_batch_of_images_and_videos(tmp_path, tiny_model):
    path = video_jsonl(tmp_path, mixed_records(tmp_path, count=4))
    overrides = ["algo=gspo", "data=jsonl", f"data.train={path}", *BUDGET]
    overrides += ["train.max_steps=1", "train.per_device_train_batch_size=4"]
    overrides += ["algo.args.num_generations=2", "algo.args.max_completion_length=8"]
    # One generation per step (gspo's file takes 4 per generation; 4 records hold 2 batches).
    overrides += ["data.image_cache=false", "algo.args.steps_per_generation=1"]
    trainer, calls, _, rows = build_and_train(overrides, tmp_path / "run", tiny_model)
    assert [r["step"] for r in rows] == [1] and math.isfinite(rows[0]["loss"])
    # Each pass embeds the 2 images (1x4x4 patches each), then the 2 clips (2x4x4 each).
    assert calls.rows == [32, 64, 32, 64]  # generation, then the training pass


def test_dpo_trains_on_video_pairs(tmp_path, tiny_model):
    path = video_jsonl(tmp_path, video_records(tmp_path))
    overrides = ["algo=dpo", "data=jsonl", f"data.train={path}", *BUDGET]
    overrides += ["train.max_steps=2", "train.per_device_train_batch_size=2"]
    _, calls, changed, rows = build_and_train(overrides, tmp_path / "run", tiny_model)
    assert [r["step"] for r in rows] == [1, 2]
    assert all(math.isfinite(r["loss"]) for r in rows)
    assert calls.rows and changed  # chosen and rejected both see the clip


def test_the_cli_trains_grpo_on_shapes_video_and_refuses_eval_steps_before_loading(tmp_path):
    """The whole command path (data check, run.train, vlexp.algorithms.video) on the built-in video task."""
    from tests.helpers import run_cli

    run_dir = tmp_path / "run"
    result = run_cli(
        "data=shapes_video",
        "train.max_steps=2",
        "train.per_device_train_batch_size=4",
        "algo.args.num_generations=2",
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_metrics(run_dir)
    assert [r["step"] for r in rows if "reward" in r] == [1, 2]
    assert "video tokens per record" in (run_dir / "app.log").read_text()
    assert (run_dir / "final" / "model.safetensors").is_file()
    assert (
        "model tiny:" in result.stdout + result.stderr
    )  # the line that the refused run below must not reach

    refused = run_cli("data=shapes_video", "train.eval_steps=1", f"hydra.run.dir={tmp_path / 'e'}")
    assert refused.returncode != 0
    assert "video_eval.jsonl: records with videos and train.eval_steps" in refused.stderr
    assert "model tiny:" not in refused.stdout + refused.stderr  # stopped before the model loaded
