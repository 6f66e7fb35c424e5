"""Inputs that used to train on garbage, crash after the model loaded, or be wrongly rejected.

Each bad record must be named by the data check (file:line, field, reason) before a model
loads; each valid one must pass.
"""

from __future__ import annotations

import json

import pytest

from tests.helpers import compose
from vlexp import runplan
from vlexp.families import FAMILIES

IMAGE = {"type": "image"}


@pytest.fixture(scope="module")
def processor(tiny_model):
    from omegaconf import OmegaConf

    from vlexp.models.loading import load_processor

    return load_processor(
        OmegaConf.create(
            {"name_or_path": "tiny://qwen2_5_vl", "min_pixels": 3136, "max_pixels": 12544}
        ),
        FAMILIES["qwen2_5_vl"],
    )


def _write(folder, rows: list, name: str = "train.jsonl"):
    from PIL import Image

    Image.new("RGB", (56, 56), (200, 40, 40)).save(folder / "a.png")
    path = folder / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _check(path, kind: str, processor, *extra: str):
    """(the check, kept records per split) with on_bad_record=skip."""
    from vlexp.data.check import DataCheck

    cfg = compose(
        [
            f"algo={kind}",
            "data=jsonl",
            f"data.train={path}",
            "data.eval=null",
            "data.on_bad_record=skip",
            f"cache_dir={path.parent / 'cache'}",
            *extra,
        ]
    )
    check = DataCheck(runplan.of(cfg).data, processor, None)
    return check, check({"train": str(path)})


def _bad(check) -> dict[int, tuple[str, str]]:
    """line -> (field, reason) of every bad record."""
    return {int(b.source.rsplit(":", 1)[1]): (b.field, b.reason) for _, b in check.bad}


def _details(check) -> dict[int, str]:
    return {int(b.source.rsplit(":", 1)[1]): b.detail for _, b in check.bad}


# --- reading: BOM, duplicate keys, JSON column, lone surrogates ---------------------------


def test_reader_accepts_a_bom_and_rejects_duplicate_keys_and_lone_surrogates(tmp_path):
    from vlexp.data.sources import Reader

    path = tmp_path / "a.jsonl"
    path.write_bytes(
        b'\xef\xbb\xbf{"prefix": "a"}\n'  # Excel / Notepad's UTF-8 BOM
        b'{"prefix": "b", "prefix": "c"}\n'
        b'{"prefix": "x\\ud800y"}\n'
        b'{"prefix": "cut short"\n'
        b'{"prefix": "\\ud83d\\ude00 is fine"}\n'
    )
    bad = []
    records = Reader().read(path, bad=bad)
    assert [r.fields["prefix"] for r in records] == ["a", "\U0001f600 is fine"]
    assert [(b.source, b.field, b.reason) for b in bad] == [
        (f"{path}:2", "line", "duplicate key"),
        (f"{path}:3", "prefix", "invalid text"),
        (f"{path}:4", "line", "invalid JSON"),
    ]
    assert "key 'prefix' is given twice" in bad[0].detail
    assert "'\\ud800' at character 2: half of a UTF-16 surrogate pair" in bad[1].detail
    # The error sits at the end of the line (column 23), not at column 1 of a next line.
    assert bad[2].detail == "not valid JSON (Expecting ',' delimiter, column 23)"


# --- records that crashed after the model loaded ------------------------------------------


def test_records_that_crashed_after_loading_are_named_by_the_check(tmp_path, processor):
    user = {"role": "user", "content": [IMAGE, {"type": "text", "text": "How many?"}]}
    url = {"type": "image_url", "image_url": {"url": "a.png"}}
    rows = [
        {"id": "ok", "image": "a.png", "prefix": "How many?", "solution": "1"},
        {"id": "typed", "image": "a.png", "prefix": "<|vision_start|><|image_pad|><|vision_end|>"},
        {"id": "url", "prompt": [{"role": "user", "content": [url]}], "solution": "1"},
        {
            "id": "ends-with-assistant",
            "prompt": [user, {"role": "assistant", "content": "2"}],
            "images": ["a.png"],
            "solution": "1",
        },
        {"id": "empty-solution", "image": "a.png", "prefix": "How many?", "solution": ""},
        {"id": "blank-list", "image": "a.png", "prefix": "How many?", "solution": [" "]},
        {"id": "empty-tags", "image": "a.png", "prefix": "?", "solution": "<answer> </answer>"},
        {"id": "both", "image": "a.png", "images": ["a.png"], "prefix": "?", "solution": "1"},
    ]
    path = _write(tmp_path, rows)
    check, kept = _check(path, "grpo", processor, "reward=[accuracy]")
    assert [r.fields["id"] for r in kept["train"]] == ["ok"]
    assert _bad(check) == {
        2: ("prefix", "vision token in text"),
        3: ("prompt", "unsupported part"),
        4: ("prompt", "prompt ends with assistant"),
        5: ("solution", "empty field"),
        6: ("solution", "empty field"),
        7: ("solution", "empty field"),
        8: ("images", "ambiguous"),
    }
    details = _details(check)
    assert "'image_url'" in details[3] and '{"type": "image", "image": "path"}' in details[3]
    assert check.stats["train"]["dropped"]["empty field"] == 3


def test_ids_1_and_quoted_1_are_one_id(tmp_path, processor):
    rows = [{"id": i, "image": "a.png", "prefix": "?", "suffix": "1"} for i in (1, 2, "1")]
    path = _write(tmp_path, rows)
    check, kept = _check(path, "sft", processor)
    assert [r.fields["id"] for r in kept["train"]] == [1, 2]
    assert _bad(check) == {3: ("id", "duplicate id")}
    assert _details(check)[3] == f"id '1' already used at {path}:1"


def test_sft_records_without_a_target_are_counted_and_a_split_of_them_stops(tmp_path, processor):
    from vlexp.data.records import DataError

    user = {"role": "user", "content": [IMAGE, {"type": "text", "text": "How many?"}]}
    rows = [
        {"messages": [user], "images": ["a.png"]},  # user-only
        {"messages": [user, {"role": "assistant", "content": "  "}], "images": ["a.png"]},
        {"messages": [user, {"role": "assistant", "content": "1"}], "images": ["a.png"]},
    ]
    path = _write(tmp_path, rows)
    check, kept = _check(path, "sft", processor)
    assert len(kept["train"]) == 1
    assert _bad(check) == {1: ("messages", "no target"), 2: ("messages", "no target")}
    assert check.stats["train"]["dropped"]["no target"] == 2
    only_empty = _write(tmp_path, rows[:2] + [{"image": "a.png", "prefix": "?", "suffix": ""}])
    with pytest.raises(DataError, match="no usable records left"):
        _check(only_empty, "sft", processor)


def test_solution_lists_mean_any_of_these():
    from vlexp.rewards.library import accuracy, choice

    completions = ["<answer>one</answer>", "<answer>1</answer>", "<answer>2</answer>"]
    assert accuracy(completions, solution=[["1", "one"]] * 3) == [1.0, 1.0, 0.0]
    # As the loader stores list columns: JSON text.
    assert accuracy(completions, solution=['["1", "one"]'] * 3) == [1.0, 1.0, 0.0]
    # A box is not a list of alternatives.
    assert accuracy(["[0, 0, 10, 10]"], solution=["[0, 0, 10, 10]"]) == [1.0]
    labels = [["cat", "kitty", "dog"]] * 2
    assert choice(["kitty", "dog"], solution=['["cat", "kitty"]'] * 2, choices=labels) == [1.0, 0.0]


# --- valid input that was rejected ---------------------------------------------------------


def test_file_urls_in_the_prefix_form_are_accepted(tmp_path, processor):
    _write(tmp_path, [])
    rows = [{"image": f"file://{tmp_path / 'a.png'}", "prefix": "?", "suffix": "1"}]
    path = _write(tmp_path, rows)
    check, kept = _check(path, "sft", processor)
    assert check.bad == [] and kept["train"][0].fields["image"] == str(tmp_path / "a.png")


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path, processor):
    import numpy as np
    from PIL import Image

    gradient = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (64, 1))
    Image.fromarray(gradient).save(tmp_path / "deep.png")  # a 16-bit grayscale PNG
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    path = _write(tmp_path, [{"image": "deep.png", "prefix": "?", "suffix": "1"}])
    check, kept = _check(path, "sft", processor)
    used = kept["train"][0].fields["image"]
    assert check.bad == [] and used != str(tmp_path / "deep.png")
    pixels = np.asarray(Image.open(used).convert("RGB"))
    assert pixels[0, 0, 0] == 0 and pixels[0, -1, 0] == 255
    assert abs(float(pixels.mean()) - 127.5) < 2  # a gradient, not 99.6% white


def test_images_above_the_bomb_limit_name_the_setting_that_allows_them(tmp_path, processor):
    from PIL import Image

    Image.new("L", (400, 300)).save(tmp_path / "scan.png")
    rows = [{"image": "scan.png", "prefix": "?", "suffix": "1"}]
    path = _write(tmp_path, rows + [{"image": "a.png", "prefix": "?", "suffix": "1"}])
    try:
        check, _ = _check(path, "sft", processor, "data.max_image_pixels=50000")
        ((_, bad),) = check.bad
        assert bad.reason == "image too large" and "data.max_image_pixels=N" in bad.detail
        check, kept = _check(path, "sft", processor, "data.max_image_pixels=200000")
        assert check.bad == [] and len(kept["train"]) == 2
    finally:
        from vlexp.data.images import set_pixel_limit

        set_pixel_limit(None)


def test_an_overlong_target_is_reported_as_the_target(tmp_path, processor):
    rows = [{"image": "a.png", "prefix": "How many?", "suffix": s} for s in ("one " * 5000, "1")]
    path = _write(tmp_path, rows)
    check, _ = _check(path, "sft", processor, "algo.args.max_length=null")
    ((_, bad),) = check.bad
    assert (bad.field, bad.reason) == ("suffix", "target too long")
    assert "shorten the target" in bad.detail
