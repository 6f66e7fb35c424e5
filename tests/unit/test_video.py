"""Video inputs: the frames and grid qwen-vl-utils' budget gives, records, the data check,
the backend choice, the collator on a mixed batch, and the `shapes` video split."""

from __future__ import annotations

import json

import pytest

from tests.helpers import compose
from tests.video_data import mixed_records, video_jsonl, write_frames, write_mp4
from vlexp import runplan
from vlexp.families import FAMILIES

BUDGET = {"min_pixels": 3136, "max_pixels": 12544}  # the tiny model's image budget


def qwen2_5_budget(**settings):
    """`data.video` settings for the tiny Qwen2.5-VL (patch 14) that these tests load with."""
    from vlexp.data.videos import Budget
    from vlexp.families import FAMILIES

    return Budget.for_family(settings, FAMILIES["qwen2_5_vl"])


@pytest.fixture(scope="module")
def processor(tiny_model):
    from omegaconf import OmegaConf

    from vlexp.models.loading import load_processor

    model = OmegaConf.create({"name_or_path": "tiny://qwen2_5_vl", **BUDGET})
    return load_processor(model, FAMILIES["qwen2_5_vl"])


@pytest.mark.parametrize(
    ("budget", "size"),
    [
        ({"fps": 2.0}, (84, 56)),  # 16 frames at 8 fps = 2 s -> 4 frames
        ({"nframes": 6}, (84, 56)),
        ({"fps": 8.0, "max_frames": 10}, (224, 168)),  # capped at 10 frames, 224x168 shrunk
        ({"fps": 2.0, "min_pixels": 256, "max_pixels": 784 * 4}, (224, 168)),
    ],
)
def test_video_grid_thw_follows_smart_nframes_and_smart_resize(processor, tmp_path, budget, size):
    from qwen_vl_utils.vision_process import smart_nframes, smart_resize

    from vlexp.algorithms.video import video_fields
    from vlexp.data.videos import load

    width, height = size
    clip = write_mp4(tmp_path / "clip.mp4", count=16, width=width, height=height, fps=8)
    settings = {**BUDGET, **budget}
    loaded = load({"path": str(clip), "frames": None}, qwen2_5_budget(**settings))
    element = {k: v for k, v in settings.items() if k in ("fps", "nframes", "max_frames")}
    nframes = smart_nframes(element, total_frames=16, video_fps=8)
    h, w = smart_resize(
        height,
        width,
        factor=28,
        min_pixels=settings["min_pixels"],
        max_pixels=settings["max_pixels"],
    )
    fields = video_fields(processor, [loaded])
    assert fields["video_grid_thw"].tolist() == [[nframes // 2, h // 14, w // 14]]
    assert tuple(loaded.frames.shape) == (nframes, 3, h, w)
    assert loaded.tokens == nframes // 2 * (h // 28) * (w // 28)
    # One row per 2x14x14 patch: (T/2) x (H/14) x (W/14) rows of 3 x 2 x 14 x 14 values.
    assert fields["pixel_values_videos"].shape == (nframes // 2 * (h // 14) * (w // 14), 1176)
    # second_per_grid_ts: seconds per temporal patch of 2 sampled frames.
    sampled_fps = nframes / 16 * 8
    assert fields["second_per_grid_ts"].tolist() == pytest.approx([2 / sampled_fps])


def test_the_processor_emits_one_video_pad_per_video_token(processor, tmp_path):
    from vlexp.algorithms.video import VideoProcessor
    from vlexp.data.videos import load

    clip = write_mp4(tmp_path / "clip.mp4", count=8, width=112, height=56, fps=4)
    loaded = load({"path": str(clip), "frames": None}, qwen2_5_budget(fps=2.0, **BUDGET))
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Go?"}]}]
    wrapped = VideoProcessor(processor, [[loaded]])
    out = wrapped.apply_chat_template(
        [messages], tokenize=True, return_dict=True, add_generation_prompt=True
    )
    video_id = processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    # 4 frames of 56x112 px: 2 temporal patches x (56/28) x (112/28) merged patches.
    assert sum(1 for t in out["input_ids"][0] if t == video_id) == loaded.tokens == 2 * 2 * 4
    assert out["video_grid_thw"].tolist() == [[2, 4, 8]]


def test_a_frame_list_is_taken_as_it_is(processor, tmp_path):
    from vlexp.data.videos import load

    names = write_frames(tmp_path / "clip", count=6, width=84, height=56)
    paths = [str(tmp_path / n) for n in names]
    loaded = load({"path": None, "frames": paths}, qwen2_5_budget(fps=3.0, **BUDGET))
    # All 6 frames, none resampled. Their size is qwen-vl-utils 0.0.14's: it resizes each frame
    # of a list with fetch_image(..., image_patch_size=28), i.e. to multiples of 56 px, so 84
    # px becomes 112 (a file's frames get multiples of 28). Inference does the same.
    assert tuple(loaded.frames.shape) == (6, 3, 56, 112)
    assert loaded.grid_thw == (3, 4, 8)
    assert loaded.metadata["fps"] == 3.0


def test_records_with_video_become_video_parts_in_every_form(tmp_path):
    from vlexp.data.records import to_example
    from vlexp.data.sources import Reader

    write_mp4(tmp_path / "a.mp4")
    frames = write_frames(tmp_path / "f")
    ask = [{"role": "user", "content": [{"type": "video", "video": "file://a.mp4"}, "What?"]}]
    path = video_jsonl(
        tmp_path,
        [
            {"video": "a.mp4", "prefix": "Where?", "suffix": "right"},
            {"video": frames, "prefix": "Where?", "suffix": "right", "rejected": "left"},
            {"prompt": ask, "completion": [{"role": "assistant", "content": "x"}]},
            {"video": "a.mp4", "messages": [{"role": "user", "content": "What?"}]},
        ],
    )
    first, second, inline, placed = Reader().read(path)
    sft = to_example(first, "sft", "{question}", None)
    assert sft["videos"] == [{"path": str(tmp_path / "a.mp4"), "frames": None}]
    assert sft["prompt"][-1]["content"][0] == {"type": "video"}
    dpo = to_example(second, "dpo", "{question}", None)
    assert dpo["videos"][0]["frames"] == [str(tmp_path / f) for f in frames]
    example = to_example(inline, "sft", "{question}", None)
    assert example["videos"] == [{"path": str(tmp_path / "a.mp4"), "frames": None}]
    assert example["prompt"][0]["content"][0] == {"type": "video"}
    messages = to_example(placed, "sft", "{question}", None)["messages"]
    assert [p["type"] for p in messages[0]["content"]] == ["video", "text"]


def _check_cfg(train, *extra):
    return compose(
        ["algo=sft", "data=jsonl", f"data.train={train}", "data.video.min_pixels=3136",
         "data.video.max_pixels=12544", *extra]
    )  # fmt: skip


def test_data_check_names_bad_videos_by_file_and_line(processor, tmp_path):
    from vlexp.data import build_datasets
    from vlexp.data.check import DataCheck
    from vlexp.data.records import DataError

    write_mp4(tmp_path / "good.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all" * 10)
    write_mp4(tmp_path / "one.mp4", count=1)
    path = video_jsonl(
        tmp_path,
        [
            {"video": "good.mp4", "prefix": "Where?", "suffix": "right"},
            {"video": "missing.mp4", "prefix": "Where?", "suffix": "right"},
            {"video": "empty.mp4", "prefix": "Where?", "suffix": "right"},
            {"video": "junk.mp4", "prefix": "Where?", "suffix": "right"},
            {"video": "../outside.mp4", "prefix": "Where?", "suffix": "right"},
            {"video": 3, "prefix": "Where?", "suffix": "right"},
            {"video": "one.mp4", "prefix": "Where?", "suffix": "right"},
            {"messages": [{"role": "user", "content": [{"type": "video"}, "Where?"]}]},
        ],
    )
    with pytest.raises(DataError) as caught:
        build_datasets(
            _check_cfg(path).data, "sft", DataCheck(runplan.of(_check_cfg(path)).data, processor)
        )
    lines = str(caught.value).splitlines()
    assert lines[0] == "7 bad record(s) (data.on_bad_record=raise):"
    by_line = {int(line.split(":")[1]): line for line in lines[1:8]}
    assert sorted(by_line) == [2, 3, 4, 5, 6, 7, 8]
    assert "video: " in by_line[2] and "cannot read the video" in by_line[2]
    assert "cannot read the video" in by_line[3] and "cannot read the video" in by_line[4]
    assert "outside" in by_line[5]
    assert "'video' must be a video path or a list of frame paths" in by_line[6]
    assert "nframes should in interval [2, 1]" in by_line[7]  # one frame cannot be sampled
    assert "1 video part(s) in the messages but 0 video(s)" in by_line[8]


def test_data_check_counts_video_tokens_against_the_length_limit(processor, tmp_path):
    from vlexp.data import build_datasets
    from vlexp.data.check import DataCheck
    from vlexp.data.records import DataError

    write_mp4(tmp_path / "clip.mp4", count=16, width=112, height=112, fps=8)
    path = video_jsonl(tmp_path, [{"video": "clip.mp4", "prefix": "Where?", "suffix": "right"}])
    # 4 frames (fps 2) x 112x112 px: 2 temporal patches x 4 x 4 = 32 video tokens.
    cfg = _check_cfg(path, "algo.args.max_length=48")
    with pytest.raises(DataError) as caught:
        build_datasets(cfg.data, "sft", DataCheck(runplan.of(cfg).data, processor))
    assert "prompt is 57 tokens (0 of them image tokens, 32 video tokens)" in str(caught.value)
    assert "data.video.fps" in str(caught.value)
    cfg = _check_cfg(path, "algo.args.max_length=48", "data.video.nframes=2")
    train, _ = build_datasets(
        cfg.data, "sft", DataCheck(runplan.of(cfg).data, processor)
    )  # 41 tokens: fits
    assert len(train) == 1


def test_a_missing_backend_names_its_package():
    from vlexp.data.videos import Budget, VideoError, backend_problems, resolve_backend
    from vlexp.validate import ConfigError, validate

    assert backend_problems(Budget(backend="vlc")) == [
        "data.video.backend must be one of auto, torchvision, pyav, decord, torchcodec, got 'vlc'"
    ]
    import importlib.util

    missing = [b for b in ("decord", "torchcodec") if importlib.util.find_spec(b) is None]
    if not missing:
        pytest.skip("decord and torchcodec are both installed here")
    with pytest.raises(VideoError, match=f"pip install {missing[0]}"):
        resolve_backend(missing[0])
    with pytest.raises(ConfigError, match=f"needs the '{missing[0]}' package: pip install"):
        validate(compose([f"data.video.backend={missing[0]}"]))


def test_a_mixed_image_and_video_batch_collates_and_runs(processor, tmp_path, tiny_model):
    import torch
    from transformers import AutoModelForImageTextToText
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from vlexp.algorithms.video import VideoCollator
    from vlexp.data import load_split

    path = video_jsonl(tmp_path, mixed_records(tmp_path, count=4))
    cfg = _check_cfg(path)
    rows = list(load_split(str(path), "sft", cfg.data))
    collate = VideoCollator(
        DataCollatorForVisionLanguageModeling(processor, completion_only_loss=True),
        qwen2_5_budget(fps=2.0, **BUDGET),
    )
    batch = collate(rows)
    assert batch["image_grid_thw"].tolist() == [[1, 4, 4]] * 2  # two 56x56 images
    assert batch["video_grid_thw"].tolist() == [[2, 4, 4]] * 2  # two 4-frame 56x56 clips
    assert sorted(batch["mm_token_type_ids"].unique().tolist()) == [0, 1, 2]
    assert (batch["mm_token_type_ids"] == 2).sum() == 2 * (2 * 2 * 2)  # 2 clips x 8 tokens
    model = AutoModelForImageTextToText.from_pretrained(tiny_model)
    loss = model(**batch).loss
    assert torch.isfinite(loss)
    assert collate.collator.processor is processor  # the wrapper is gone after the batch


def test_shapes_video_answers_can_be_checked_from_the_pixels(tmp_path):
    import numpy as np
    from PIL import Image

    from vlexp.data import shapes_video

    out = shapes_video.generate(tmp_path / "v", num_train=24, num_eval=2, seed=3)
    again = shapes_video.generate(tmp_path / "w", num_train=24, num_eval=2, seed=3)
    lines = (out / "video_train.jsonl").read_text().splitlines()
    assert lines == (again / "video_train.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert {r["task"] for r in records} == {"cross", "first"}
    for record in records:
        frames = [np.array(Image.open(out / f)) for f in record["video"]]
        assert len(frames) % 2 == 0 and 4 <= len(frames) <= 8
        if record["task"] == "cross":
            red = [np.argwhere((f == (220, 40, 40)).all(-1))[:, 1].mean() for f in frames]
            sides = [x > f.shape[1] / 2 for x, f in zip(red, frames, strict=True)]
            assert record["solution"] == str(
                sum(a != b for a, b in zip(sides, sides[1:], strict=False))
            )
        else:
            # The first shape is drawn top left, the second bottom right: the top-left one must
            # show up strictly earlier, and its fill ratio names its kind.
            side = min(frames[0].shape[:2]) // 3
            shown = [(f.astype(int).sum(-1) < 600) for f in frames]  # not background
            top_left = [bool(m[: side + 3, : side + 3].any()) for m in shown]
            bottom_right = [bool(m[-side - 3 :, -side - 3 :].any()) for m in shown]
            assert top_left.index(True) < bottom_right.index(True)
            fill = shown[-1][2 : side + 3, 2 : side + 3].mean()
            kind = "square" if fill > 0.95 else "circle" if fill > 0.65 else "triangle"
            assert record["solution"] == kind
