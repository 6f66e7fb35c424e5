"""Gold boxes in GRPO columns are rescaled to the frame the model answers in, so a perfect
answer scores 1 with `iou`."""

from __future__ import annotations

import dataclasses
import json

import pytest
from omegaconf import OmegaConf

from tests import peer_data
from tests.helpers import compose
from vlexp import runplan
from vlexp.data import load_split
from vlexp.data.boxes import resized_size
from vlexp.rewards import iou


def data_cfg(*overrides: str):
    cfg = compose(["model=tiny", *overrides])
    runplan.of(cfg)  # start-up resolves the family, which data.boxes.family follows
    return OmegaConf.create(OmegaConf.to_container(cfg.data, resolve=True))


def rec_file(tmp_path):
    """VLM-R1 REC records: the gold box in pixels of a 1000x800 image (original size)."""
    from PIL import Image

    Image.new("RGB", (1000, 800)).save(tmp_path / "big.png")
    question = "<image>Please provide the bounding box coordinate of the region this sentence describes: the sky."
    rows = [
        {
            "id": 1,
            "image": "big.png",
            "conversations": [
                {"from": "human", "value": question},
                {"from": "gpt", "value": "[100, 40, 500, 80]"},
            ],
        },
        {
            "id": 2,
            "image": "big.png",
            "problem": question,
            "box": [0, 0, 1000, 800],
            "solution": "none",
        },
    ]
    return peer_data.write_jsonl(tmp_path / "rec.jsonl", rows)


def test_gold_boxes_follow_the_resized_image(tmp_path):
    path = rec_file(tmp_path)
    cfg = data_cfg("data=jsonl", f"data.train={path}")  # data.boxes.gold=true by default
    rows = load_split(cfg.train, "grpo", cfg)
    w, h = resized_size(1000, 800, cfg.boxes.min_pixels, cfg.boxes.max_pixels, 28)
    assert (w, h) != (1000, 800)
    expected = [
        round(100 * w / 1000),
        round(40 * h / 800),
        round(500 * w / 1000),
        round(80 * h / 800),
    ]
    assert rows["solution"] == [json.dumps(expected), "none"]
    assert json.loads(rows["box"][1]) == [0, 0, w, h]
    # the model answers in the resized image's pixels: that answer is a perfect score
    answer = f"<answer>{expected}</answer>"
    assert iou([answer], solution=rows["solution"][:1]) == [1.0]
    off = data_cfg("data=jsonl", f"data.train={path}", "data.boxes.gold=false")
    plain = load_split(str(path), "grpo", off)
    assert plain["solution"] == ["[100, 40, 500, 80]", "none"]  # as written
    assert iou([answer], solution=plain["solution"][:1])[0] < 0.5  # unless the reward maps it


def test_only_gold_that_is_a_box_moves_and_boxes_need_one_image(tmp_path):
    from PIL import Image

    from vlexp.data import DataError

    Image.new("RGB", (1000, 800)).save(tmp_path / "big.png")
    rows = [
        {"image": "big.png", "problem": "Sort 4, 3, 2, 1.", "solution": "The list [1, 2, 3, 4]."},
        {"image": "big.png", "problem": "Which?", "solution": "<answer>[0, 0, 1000, 800]</answer>"},
        {"image": "big.png", "problem": "How many?", "solution": "3"},
    ]
    path = peer_data.write_jsonl(tmp_path / "mixed.jsonl", rows)
    cfg = data_cfg("data=jsonl", f"data.train={path}")
    w, h = resized_size(1000, 800, cfg.boxes.min_pixels, cfg.boxes.max_pixels, 28)
    assert load_split(cfg.train, "grpo", cfg)["solution"] == [
        "The list [1, 2, 3, 4].",
        f"<answer>[0, 0, {w}, {h}]</answer>",
        "3",
    ]
    two = {"images": ["big.png", "big.png"], "problem": "Where?", "box": [0, 0, 10, 10]}
    path = peer_data.write_jsonl(tmp_path / "two.jsonl", [two])
    cfg = data_cfg("data=jsonl", f"data.train={path}")
    with pytest.raises(DataError, match=r"two.jsonl:1: boxes need exactly one image .*has 2"):
        load_split(cfg.train, "grpo", cfg)


def test_a_relative_frame_family_gets_0_1000_boxes(tmp_path, monkeypatch):
    import vlexp.families as families

    relative = dataclasses.replace(families.of_tiny("qwen2_5_vl"), box_frame="relative_1000")
    monkeypatch.setitem(families.FAMILIES, "qwen2_5_vl", relative)
    path = rec_file(tmp_path)
    cfg = data_cfg("data=jsonl", f"data.train={path}")
    rows = load_split(cfg.train, "grpo", cfg)
    assert rows["solution"][0] == json.dumps([100, 50, 500, 100])


def test_each_familys_perfect_answer_scores_1_on_the_same_record(tmp_path):
    """One record file (a 224x168 image, the box in its pixels), read for each model: the
    loader puts the gold box in the family's frame, and a perfect answer in the family's own
    convention scores exactly 1.0 in training (GRPO's rewards) and in evaluation."""
    from PIL import Image

    from vlexp.evaluation.core import build_rewards

    Image.new("RGB", (224, 168)).save(tmp_path / "a.png")
    row = {"image": "a.png", "problem": "Where is the square?", "box": [56, 42, 112, 84]}
    path = peer_data.write_jsonl(tmp_path / "rec.jsonl", [row])
    answers = {
        "tiny_qwen3_vl": ("[250, 250, 500, 500]", "[28, 21, 56, 42]"),  # 0..1000
        "tiny": ("[28, 21, 56, 42]", "[250, 250, 500, 500]"),  # resized to 112x84 px
        "tiny_gemma3": ("[56, 42, 112, 84]", "[28, 21, 56, 42]"),  # the image's pixels
    }
    for model, (perfect, wrong) in answers.items():
        cfg = compose([f"model={model}", "algo=grpo", "reward=iou", "data=jsonl"])
        cfg.data.train = str(path)
        plan = runplan.of(cfg)  # start-up: the family resolved once, for boxes and rewards
        rows = load_split(cfg.data.train, "grpo", cfg.data)
        assert json.loads(rows["box"][0]) == json.loads(perfect), model  # the family's frame
        completions = [f"<answer>{perfect}</answer>", f"<answer>{wrong}</answer>"]
        columns = {"box": list(rows["box"]) * 2, "images": [rows[0]["images"]] * 2}
        assert runplan.of(cfg).reward_functions()["iou"](completions, **columns) == [1.0, 0.0], (
            model
        )
        # evaluation hands the loaded model's frame; the gold is already in it: not bound
        funcs, _ = build_rewards(cfg.reward, plan.box_frame(), cfg.data)
        assert funcs["iou"](completions, **columns) == [1.0, 0.0], model


def test_iou_scores_a_perfect_answer_whether_or_not_the_loader_rescales(tmp_path):
    """Gold boxes in original pixels (gold off): the reward maps the answer from the
    family's frame; rescaled gold boxes (gold on) are already in that frame: compared as
    they are. Either way the model's perfect answer scores 1 and a box in the wrong frame not."""
    from PIL import Image

    path = rec_file(tmp_path)
    image = Image.open(tmp_path / "big.png")
    for gold in ("false", "true"):
        cfg = compose(
            ["model=tiny", "algo=grpo", "reward=iou", "data=jsonl", f"data.train={path}"]
            + [f"data.boxes.gold={gold}"]
        )
        rows = load_split(str(path), "grpo", data_cfg(*cfg_overrides(path, gold)))
        w, h = resized_size(1000, 800, cfg.data.boxes.min_pixels, cfg.data.boxes.max_pixels, 28)
        perfect = [
            round(100 * w / 1000),
            round(40 * h / 800),
            round(500 * w / 1000),
            round(80 * h / 800),
        ]
        reward = runplan.of(cfg).reward_functions()["iou"]
        scores = reward(
            [f"<answer>{perfect}</answer>", "<answer>[100, 40, 500, 80]</answer>"],
            solution=rows["solution"][:1] * 2,
            images=[[image], [image]],
        )
        # The tiny pixel budget resizes 1000x800 to ~125x100 px: whole pixels there are 8 px
        # here, so the mapped perfect answer overlaps the gold box by less than 1.
        assert scores[0] > 0.8, (gold, scores)
        assert scores[1] < 0.5, (gold, scores)  # original pixels: not what the model sees


def cfg_overrides(path, gold: str) -> list[str]:
    return ["data=jsonl", f"data.train={path}", f"data.boxes.gold={gold}"]
