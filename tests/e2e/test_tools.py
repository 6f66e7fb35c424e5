"""env=zoom through TRL's own tool loop, on every tiny model: scripted model turns (a zoom
call, a malformed call, a plain answer) go through `GRPOTrainer._tool_call_loop`, the zoom
tool and one real training step. Expectations come from what the test scripted, the
processor's own image-token count and TRL's masks, never from vlexp's helpers."""

from __future__ import annotations

import pytest

from tests.helpers import build_trainer, compose, read_metrics
from vlexp import families
from vlexp.paths import config_dir
from vlexp.validate import ConfigError

# Fast set: Qwen2.5-VL (the default tiny) and Gemma 3's refusal (no tool template); the
# rest (Qwen3.5's reference linear-attention kernels, the MoE twins) ~1 min each, in the slow set.
FAST = {"tiny", "tiny_gemma3"}


def _tiny_models() -> list:
    """Every tiny model config (the registry: conf/model/tiny*.yaml)."""
    paths = sorted((config_dir() / "model").glob("tiny*.yaml"))
    return [pytest.param(p.stem, marks=[] if p.stem in FAST else [pytest.mark.slow]) for p in paths]


ANSWER = "<think>I see it.</think><answer>circle</answer>"
# Per rollout (4 = 1 prompt x 4 generations): 0 answers at once, 1 sends a malformed box,
# 2 and 3 zoom on the shape's box.
MALFORMED = [1, 2]


def call_text(processor, box: list) -> str:
    """A zoom call as the model's own chat template writes it (Qwen's JSON, Qwen3.5's XML)."""
    from trl.data_utils import prepare_multimodal_messages

    call = {"name": "image_zoom_in_tool", "arguments": {"bbox_2d": box}}
    user = [{"role": "user", "content": "q"}]
    turn = {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"type": "function", "function": call}],
    }
    prefix = processor.apply_chat_template(
        prepare_multimodal_messages(user), add_generation_prompt=True, tokenize=False
    )
    full = processor.apply_chat_template(prepare_multimodal_messages([*user, turn]), tokenize=False)
    assert full.startswith(prefix)
    return full[len(prefix) :].split(processor.tokenizer.eos_token)[0]


def target_box(image) -> list[int]:
    """The one shape's pixel box, found from the pixels (not the record)."""
    import numpy as np

    pixels = np.asarray(image.convert("RGB")).astype(int)
    ys, xs = np.nonzero((pixels != pixels[0, 0]).any(axis=-1))
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def in_model_frame(box: list[int], size: tuple[int, int], family, processor) -> list[int]:
    """`box` as the family writes boxes, computed with transformers' own smart_resize."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    width, height = size
    if family.box_frame == "relative_1000":
        sx, sy = 1000 / width, 1000 / height
    elif family.box_frame == "pixels":
        limits = processor.image_processor.size
        factor = family.pixels_per_token
        new_h, new_w = smart_resize(
            height, width, factor, limits["shortest_edge"], limits["longest_edge"]
        )
        sx, sy = new_w / width, new_h / height
    else:
        sx = sy = 1.0
    return [round(box[0] * sx), round(box[1] * sy), round(box[2] * sx), round(box[3] * sy)]


class Script:
    """Stands in for `GRPOTrainer._generate_single_turn`: the model's turns, as token ids."""

    def __init__(self, trainer, family) -> None:
        self.trainer, self.family = trainer, family
        self.tokenizer = trainer.processing_class.tokenizer
        self.model_texts: list[list[str]] = []  # per rollout, every text the "model" wrote
        self.outputs: list[dict] = []

    def ids(self, text: str) -> list[int]:
        return self.tokenizer(text + self.tokenizer.eos_token, add_special_tokens=False)[
            "input_ids"
        ]

    def __call__(self, prompt_ids, images, fields, num_generations, has_tool_images=False):
        if num_generations > 1:  # the first turn of every rollout
            texts = [self.first_turn(i, imgs) for i, imgs in enumerate(images)]
            self.model_texts = [[t] for t in texts]
        else:  # after a tool result: the answer
            texts = [ANSWER] * len(prompt_ids)
            pending = [i for i, t in enumerate(self.model_texts) if len(t) == 1 and i % 4]
            for i in pending[: len(texts)]:
                self.model_texts[i].append(ANSWER)
        return [self.ids(t) for t in texts], None

    def first_turn(self, i: int, imgs) -> str:
        if i % 4 == 0:
            return ANSWER
        if i % 4 == 1:
            return call_text(self.trainer.processing_class, MALFORMED)
        image = imgs[0]
        processor = self.trainer.processing_class
        box = in_model_frame(target_box(image), image.size, self.family, processor)
        return call_text(processor, box)


def _image_tokens(processor, image) -> int:
    """LLM tokens the processor gives `image` (its own grid, merged)."""
    grid = processor.image_processor(images=[image], return_tensors="pt")["image_grid_thw"]
    return int(grid.prod()) // processor.image_processor.merge_size**2


def _shape_fraction(image) -> float:
    """Share of the image that is not background: the zoomed shape fills a good part of it."""
    import numpy as np

    pixels = np.asarray(image.convert("RGB")).astype(int)
    return float((pixels != pixels[0, 0]).any(axis=-1).mean())


@pytest.mark.parametrize("model", _tiny_models())
def test_tool_turns_are_never_trained_on_and_the_crop_reaches_the_model(model, tmp_path):
    from trl.chat_template_utils import supports_tool_calling

    from vlexp.models.loading import load_processor

    overrides = [f"model={model}", "env=zoom", "data=shapes_zoom", "train.max_steps=1"]
    overrides += ["train.per_device_train_batch_size=4"]
    model_cfg = compose([f"model={model}"]).model
    family = families.resolve(model_cfg)
    if family.tool_template is None and not supports_tool_calling(
        load_processor(model_cfg, family)
    ):
        # TRL's own check says this chat template cannot hold a tool call: one clear message.
        with pytest.raises(ValueError, match="renders no tool calls"):
            build_trainer(overrides, tmp_path)
        return
    if family.packed_images:  # tool results' images cannot ride in the packed rows
        with pytest.raises(ConfigError, match="packs every image of a call into one row"):
            build_trainer(overrides, tmp_path)
        return
    trainer, _ = build_trainer(overrides, tmp_path)
    script = Script(trainer, family)
    trainer._generate_single_turn = script
    generate_and_score = trainer._generate_and_score_completions

    def keep(inputs):
        out = generate_and_score(inputs)
        script.outputs.append(out)
        return out

    trainer._generate_and_score_completions = keep
    trainer.train()  # one real step: tool images go through the training forward
    out = script.outputs[0]
    processor = trainer.processing_class
    tokenizer = processor.tokenizer
    loss_mask = out["completion_mask"] * out["tool_mask"]  # what TRL trains on
    image_pad = processor.image_token_id
    crops = [env.turns for env in trainer.environments]
    for row, ids in enumerate(out["completion_ids"].tolist()):
        trained = [t for t, m in zip(ids, loss_mask[row].tolist(), strict=True) if m]
        expected = [t for text in script.model_texts[row] for t in script.ids(text)]
        assert trained == expected, (row, tokenizer.decode(trained))
        pads = sum(t == image_pad for t in ids)
        returned = [p["image"] for turn in crops[row] for p in turn.get("parts", [])]
        assert pads == sum(_image_tokens(processor, image) for image in returned)
        if row % 8 >= 2:
            assert len(returned) == 1 and _shape_fraction(returned[0]) > 0.05
    rows = read_metrics(tmp_path)
    assert rows[0]["tools/call_frequency"] == pytest.approx(3 / 4)  # calls per rollout
    # The malformed box came back as a message, not an exception: TRL alone counts 0 of 3.
    assert rows[0]["tools/failure_frequency"] == pytest.approx(1 / 3)
