"""The data check's token counts equal the processor's, for every family with a tiny build.

Reference: the family's real processor, as the trainer calls it: `apply_chat_template` on the
record's conversation, then `processor(text=..., images=..., videos=...)`; the length of its
`input_ids` is what the model sees and what `max_length` cuts. Videos are vlexp's own sampled
and resized frames (`videos.load`, what training hands the processor), so both sides count the
same frames. Images of several sizes and aspect ratios; videos as files and as frame lists,
of 2 to 16 sampled frames (odd frame lists too), at several sampling rates.
"""

from __future__ import annotations

import pytest

from tests.helpers import compose
from tests.video_data import video_jsonl, write_frames, write_mp4
from vlexp import families, runplan
from vlexp.paths import config_dir

FAMILIES = [family for family in families.FAMILIES.values() if family.tiny]
VIDEO_FAMILIES = [family for family in FAMILIES if family.video]
# (width, height): square, 4:3, a tall and a wide strip, and one far over the pixel budget.
SIZES = [(56, 56), (224, 168), (30, 200), (500, 40), (1000, 800)]
# Video files as (frames, their frame rate): sampled at data.video.fps into 2 to 16 frames.
CLIPS = [(4, 4), (16, 8), (9, 3), (7, 7), (64, 8)]
FRAME_LISTS = [2, 3, 5, 16]  # frame lists are taken whole (odd ones padded by a last frame)
# The frame counts the processor then gets, per data.video.fps: files and lists together.
SAMPLED = {1.0: {2, 4, 6, 8, 16}, 2.0: {2, 4, 6, 16}, 3.5: {2, 4, 6, 8, 16}}
VIDEO_BUDGET = ["data.video.min_frames=2", "data.video.max_frames=16"]
VIDEO_PIXELS = ["data.video.min_pixels=3136", "data.video.max_pixels=16384"]


def model_config(family: families.Family) -> str:
    """The conf/model file of the family's tiny build (its name_or_path is tiny://<name>)."""
    for path in sorted((config_dir() / "model").glob("*.yaml")):
        if f"name_or_path: tiny://{family.name}\n" in path.read_text():
            return path.stem
    raise AssertionError(f"no conf/model file builds tiny://{family.name}")


def check_config(family: families.Family, path, *overrides: str):
    return compose(
        [f"model={model_config(family)}", "algo=sft", "data=jsonl", f"data.train={path}"]
        + list(overrides)
    )


def check_and_reference(family: families.Family, records: list[dict], folder, *overrides):
    """(the data check's prompt tokens per record, the processor's input_ids length per record,
    the frame counts of the videos given to the processor)."""
    from PIL import Image

    from vlexp.data import videos
    from vlexp.data.check import DataCheck
    from vlexp.data.records import convert
    from vlexp.data.sources import Reader
    from vlexp.models import tiny
    from vlexp.models.loading import load_processor

    tiny.ensure(family.name)
    path = video_jsonl(folder, records)
    cfg = check_config(family, path, *overrides)
    processor = load_processor(cfg.model, runplan.of(cfg).family)
    check = DataCheck(runplan.of(cfg).data, processor)
    check({"train": str(path)})
    assert check.bad == []
    budget = runplan.of(cfg).data.video
    real, frames = [], set()
    for record in Reader(cfg.data).read(str(path)):
        example = convert(record, "sft", cfg.data)
        conversation = example.get("messages") or example["prompt"]
        text = processor.apply_chat_template(
            conversation, tokenize=False, add_generation_prompt="messages" not in example
        )
        media = {}
        if example.get("images"):
            # One list per text, as TRL's trainers pass them: LLaVA-OneVision counts a prompt's
            # images together (one of several costs one tile, a lone one is tiled).
            media["images"] = [[Image.open(p).convert("RGB") for p in example["images"]]]
        if example.get("videos"):
            loaded = [videos.load(video, budget) for video in example["videos"]]
            media.update(videos.processor_inputs(loaded))
            frames |= {video.frames.shape[0] for video in loaded}
        real.append(len(processor(text=[text], **media)["input_ids"][0]))
    return check.stats["train"]["prompt_tokens"], real, frames


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_image_record_lengths_equal_the_processors(family, tmp_path):
    from PIL import Image

    records = []
    for width, height in SIZES:
        name = f"{width}x{height}.png"
        Image.new("RGB", (width, height), (200, 40, 40)).save(tmp_path / name)
        records.append({"image": name, "prefix": "What colour is it?", "suffix": "red"})
    # Two images in one prompt; whole conversations (the full sequence is counted), with the
    # image after text and between texts, where its expansion meets the text around it.
    records.append({"images": ["56x56.png", "1000x800.png"], "prefix": "Same?", "suffix": "no"})
    for content in ("<image>Colour?", "Colour?<image>", "See:\n<image>\n\nColour?"):
        turns = [{"role": "user", "content": content}, {"role": "assistant", "content": "red"}]
        records.append({"messages": turns, "images": ["224x168.png"]})
    counted, real, _ = check_and_reference(family, records, tmp_path)
    assert counted == real


@pytest.mark.parametrize("fps", [1.0, 2.0, 3.5])
@pytest.mark.parametrize("family", VIDEO_FAMILIES, ids=lambda f: f.name)
def test_video_record_lengths_equal_the_processors(family, fps, tmp_path):
    from PIL import Image

    Image.new("RGB", (100, 60), (40, 40, 200)).save(tmp_path / "frame.png")
    records = []
    for count, rate in CLIPS:
        write_mp4(tmp_path / f"{count}at{rate}.mp4", count=count, width=112, height=64, fps=rate)
        records.append({"video": f"{count}at{rate}.mp4", "prefix": "Where?", "suffix": "right"})
    for count in FRAME_LISTS:
        frames = write_frames(tmp_path / f"list{count}", count=count, width=84, height=56)
        records.append({"video": frames, "prefix": "Where?", "suffix": "right"})
    for content in ("<video>Where?", "Where?<video>", "First<video>then<image>, why?"):
        turns = [{"role": "user", "content": content}, {"role": "assistant", "content": "up"}]
        images = ["frame.png"] if "<image>" in content else []
        records.append({"messages": turns, "videos": ["16at8.mp4"], "images": images})
    # Two videos and an image in one prompt (the prefix/suffix form puts them first).
    records.append(
        {"videos": ["4at4.mp4", "9at3.mp4"], "image": "frame.png", "prefix": "?", "suffix": "!"}
    )
    overrides = [f"data.video.fps={fps}", *VIDEO_BUDGET, *VIDEO_PIXELS]
    counted, real, frames = check_and_reference(family, records, tmp_path, *overrides)
    assert counted == real
    assert frames == SAMPLED[fps]


@pytest.mark.parametrize("family", VIDEO_FAMILIES, ids=lambda f: f.name)
def test_a_video_prompt_the_trainer_would_cut_is_refused(family, tmp_path):
    """The symptom: a prompt the processor makes `max_length` tokens long leaves no room for
    the completion (the trainer cuts it), so the check must refuse the record."""
    from vlexp.data.check import DataCheck
    from vlexp.data.records import DataError
    from vlexp.models.loading import load_processor

    write_mp4(tmp_path / "clip.mp4", count=64, width=112, height=64, fps=8)  # 16 frames at 2 fps
    records = [{"video": "clip.mp4", "prefix": "Where?", "suffix": "right"}]
    overrides = ["data.video.fps=2.0", *VIDEO_BUDGET, *VIDEO_PIXELS]
    _, [real], _ = check_and_reference(family, records, tmp_path, *overrides)
    path = tmp_path / "train.jsonl"
    cfg = check_config(family, path, *overrides, f"algo.args.max_length={real}")
    with pytest.raises(DataError, match=f"prompt is {real} tokens"):
        DataCheck(runplan.of(cfg).data, load_processor(cfg.model, runplan.of(cfg).family))(
            {"train": str(path)}
        )


def test_an_unknown_family_stops_the_check_instead_of_guessing(tmp_path):
    """No default patch size (was 14) or pixel budget (was 56x56 to 28x28x1280 px) when the
    model's family or the processor's budget cannot be told."""
    from types import SimpleNamespace

    from vlexp.data.images import processor_geometry

    cfg = compose([f"model.name_or_path={tmp_path / 'no-model'}", "data=shapes_video"])
    # families.UnknownFamily (a ValueError), the one message the start-up resolution gives.
    with pytest.raises(ValueError, match="model.name_or_path=.*no-model: .*config.json"):
        runplan.of(cfg)
    unbudgeted = SimpleNamespace(
        image_processor=SimpleNamespace(patch_size=14, merge_size=2, size={"height": 64})
    )
    with pytest.raises(ValueError, match="set model.min_pixels and model.max_pixels"):
        processor_geometry(unbudgeted, families.FAMILIES["qwen2_5_vl"])
