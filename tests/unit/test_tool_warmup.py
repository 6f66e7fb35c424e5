"""The `+tools` tiny variant (`model=tiny_tools`, vlexp.models.tool_warmup): its own cache
entry and tokenizer, a loss on the model's own turns only (checked against the chat template's
rendering of those turns); and the zoom windows of `check_data --show`'s example call, which
hold the shape (checked on the pixels the run's own tool returns, for every tiny model)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers import compose
from vlexp import environments, families, runplan
from vlexp.data import shapes_zoom
from vlexp.environments.zoom import window as zoom_window
from vlexp.models import tiny, tool_warmup
from vlexp.paths import config_dir

TINY_MODELS = sorted(p.stem for p in (config_dir() / "model").glob("tiny*.yaml"))


@pytest.fixture(scope="module")
def zoom_records(tmp_path_factory) -> tuple[list[dict], object]:
    out = shapes_zoom.generate(tmp_path_factory.mktemp("zoom"), num_train=24, num_eval=1, seed=3)
    lines = (out / "train.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines], out


def _shape_box(pixels: np.ndarray) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of the non-background pixels, found from the pixels."""
    ys, xs = np.nonzero((pixels != pixels[0, 0]).any(axis=-1))
    if len(xs) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def test_the_variant_is_its_own_build_and_the_default_is_untouched():
    assert families.of_tiny("qwen2_5_vl+tools") is families.of_tiny("qwen2_5_vl")
    assert families.tiny_variant("qwen2_5_vl+tools") == "tools"
    assert families.tiny_variant("qwen2_5_vl") is None
    assert tiny.default_path("qwen2_5_vl+tools") != tiny.default_path("qwen2_5_vl")
    with pytest.raises(families.UnknownFamily, match=r"tiny://<build>\+tools"):
        families.of_tiny("qwen2_5_vl+nope")
    assert compose(["model=tiny_tools"]).model.name_or_path == "tiny://qwen2_5_vl+tools"


def test_the_default_build_never_runs_the_tool_warm_up(tmp_path, shapes_dir, monkeypatch):
    """`model=tiny`'s bytes are every learning test's starting point: the variant's code
    must not run in its build."""

    def refuse(*args, **kwargs):
        raise AssertionError("the plain tiny build ran the tool warm-up")

    monkeypatch.setattr(tool_warmup, "tool_warm_up", refuse)
    monkeypatch.setattr(tool_warmup, "corpus_texts", refuse)
    monkeypatch.setitem(tiny.WARMUP, "steps", 1)
    tiny.build(tmp_path / "plain", seed=0)


def test_the_variant_tokenizer_splits_the_same_after_saving(tmp_path, shapes_dir):
    """The warm-up trains on words; a reloaded tokenizer that split differently would feed
    the model pieces it never saw (Qwen2Tokenizer re-imposes its GPT-2 split on load)."""
    from transformers import AutoTokenizer

    records = [json.loads(line) for line in (shapes_dir / "train.jsonl").open()][:64]
    call = '<tool_call>\n{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [28, 0, 84, 56]}}'
    built = tiny.build_tokenizer(
        records, families.FAMILIES["qwen2_5_vl"].special_tokens, [call] * 20
    )
    built.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = f"<|im_start|>assistant\n{call}<|im_end|>"
    assert loaded.tokenize(text) == built.tokenize(text)
    assert len(built(text)["input_ids"]) < 20  # words, not ~90 characters


@pytest.mark.parametrize("model", TINY_MODELS)
def test_every_example_window_holds_the_whole_shape(model, zoom_records):
    """The window `check_data --show`'s example call zooms on, given to the run's own zoom
    tool (env=zoom with this model's box frame), returns a crop with the whole shape in it,
    off the crop's edges."""
    from PIL import Image

    records, data_dir = zoom_records
    cfg = compose([f"model={model}", "env=zoom"])
    plan = runplan.of(cfg)
    env = environments.factory(plan.env, plan.tool_limits())()
    frame = plan.tool_limits().frame
    for record in records:
        image = Image.open(data_dir / record["image"]).convert("RGB")
        env.reset(images=[image])
        out = env.image_zoom_in_tool(zoom_window(record["target_box"], image.size, frame))
        assert isinstance(out, list), (record["id"], out)
        crop = np.asarray(out[0]["image"].convert("RGB")).astype(int)
        box = _shape_box(crop)
        assert box is not None, record["id"]  # the shape is in the crop ...
        height, width = crop.shape[:2]
        assert box[0] > 0 and box[1] > 0 and box[2] < width and box[3] < height, record["id"]


def test_the_loss_covers_the_model_turns_and_nothing_else(tiny_model, zoom_records):
    """Trained tokens = the zoom turn (four calls, one per quarter) as the chat template renders
    an assistant turn with tool calls, then the answer, each through its end token; the tool
    turns (the crops' image tokens) and the prompt are not trained on."""
    from PIL import Image
    from transformers import AutoProcessor

    from vlexp.environments.zoom import ZoomEnv

    records, data_dir = zoom_records
    processor = AutoProcessor.from_pretrained(tiny_model)
    family = families.of_tiny("qwen2_5_vl")
    environments.speak_tools(processor, family)
    env = ZoomEnv(tool_warmup.limits_of(family, processor))
    image = Image.open(data_dir / records[0]["image"]).convert("RGB")
    chat = tool_warmup.conversation(records[0], image, env, zoom=True)
    got = tool_warmup.example(processor, chat, [env.image_zoom_in_tool])
    inputs = tool_warmup.batch_inputs(processor, [got])
    ids, labels = inputs["input_ids"][0].tolist(), inputs["labels"][0].tolist()
    trained = processor.tokenizer.decode(
        [t for t, label in zip(ids, labels, strict=True) if label != -100]
    )
    # The reference: the chat template's own text for the assistant turns.
    user, call_turn = chat[0], chat[1]
    before = processor.apply_chat_template(
        [user], tools=[env.image_zoom_in_tool], tokenize=False, add_generation_prompt=True
    )
    through = processor.apply_chat_template(
        [user, call_turn], tools=[env.image_zoom_in_tool], tokenize=False
    )
    end = processor.tokenizer.eos_token
    call = through[len(before) :].split(end)[0]
    assert call.count('"bbox_2d": [') == 4  # one call per quarter
    assert trained == call + end + tool_warmup.answer(records[0]) + end
    pad = processor.image_token_id
    assert not any(t == pad and label != -100 for t, label in zip(ids, labels, strict=True))
    grid = inputs["image_grid_thw"]  # the processor's own count: prompt image + 4 crops
    assert ids.count(pad) == int(grid.prod(-1).sum()) // 4 and len(grid) == 5
