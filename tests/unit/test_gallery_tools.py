"""Evaluation with env=zoom: each sample is a rollout (the model's call, the tool's image, the
answer), scored as a whole as TRL scores it, and the gallery (samples.html) shows it turn by
turn with the image the tool returned. The model's turns are scripted (the tiny model's
`generate` returns them); the tool, the rewards and the gallery are the real ones."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import torch

from tests.helpers import compose
from vlexp import environments, runplan

CALL = '<tool_call>\n{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [56, 0, 112, 56]}}\n</tool_call>'
ANSWER = "<think>A square.</think><answer>square</answer>"


def _canvas(path) -> None:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (448, 448), (255, 255, 255))
    ImageDraw.Draw(image).rectangle([300, 80, 317, 97], fill=(220, 40, 40))  # top right
    image.save(path)


def _red(pixels: np.ndarray) -> float:
    """Share of the pixels near the square's red (resampling blurs its edges)."""
    return float((np.abs(pixels - (220, 40, 40)).sum(axis=-1) < 60).mean())


def _scripted(model, tokenizer) -> list[str]:
    """model.generate answers with the zoom call, then (with the tool's image) the answer."""
    said = []

    def generate(input_ids=None, **kwargs):
        text = CALL if "<tool_response>" not in tokenizer.decode(input_ids[0]) else ANSWER
        said.append(text)
        new = tokenizer(text + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        return torch.cat([input_ids, torch.tensor([new])], dim=1)

    model.generate = generate
    return said


def test_evaluation_runs_the_tool_and_the_gallery_shows_each_turn(tiny_model, tmp_path):
    from PIL import Image
    from transformers import AutoModelForImageTextToText

    from vlexp.evaluation.core import evaluate, write_outputs
    from vlexp.evaluation.tools import Agent
    from vlexp.models.loading import load_processor

    cfg = compose(["env=zoom", "data=shapes_zoom", "eval.max_new_tokens=64"])
    plan = runplan.of(cfg)
    processor = load_processor(cfg.model, plan.family)
    environments.speak_tools(processor, plan.family)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model).eval()
    said = _scripted(model, processor.tokenizer)
    _canvas(tmp_path / "canvas.png")
    question = [{"type": "image"}, {"type": "text", "text": "What shape is the small red mark?"}]
    example = {
        "prompt": [{"role": "user", "content": question}],
        "images": [str(tmp_path / "canvas.png")],
        "solution": "square",
        "id": "zoom-0",
    }
    metrics, samples = evaluate(
        model,
        processor,
        [example],
        cfg.eval,
        cfg.reward,
        progress=False,
        agent=Agent.of(plan.env, plan.tool_limits()),
    )
    assert said == [CALL, ANSWER]
    (sample,) = samples
    assert sample["rewards"]["accuracy"] == 1.0 and metrics["accuracy"] == 1.0
    assert [t["role"] for t in sample["turns"]] == ["assistant", "tool", "assistant"]
    out = write_outputs(tmp_path / "eval", metrics, samples, {}, cfg.eval.gallery)
    # samples.jsonl names the returned image's file; it holds the red square, enlarged.
    turns = json.loads((out / "samples.jsonl").read_text())["turns"]
    (path,) = turns[1]["images"]
    crop = np.asarray(Image.open(path).convert("RGB")).astype(int)
    # The 18 px square in the 224 px window, returned at 112 px: ~81 of 12,544 px are red.
    assert _red(crop) > 0.003
    page = (out / "samples.html").read_text()
    assert page.index("turn 1 · model") < page.index("turn 2 · image_zoom_in_tool")
    assert page.index("turn 2 · image_zoom_in_tool") < page.index("turn 3 · model")
    assert "&lt;tool_call&gt;" in page and "&lt;answer&gt;square&lt;/answer&gt;" in page
    # The tool turn's thumbnail is that image.
    tool_block = page[page.index("turn 2 · image_zoom_in_tool") : page.index("turn 3 · model")]
    uri = re.search(r'src="data:image/\w+;base64,([^"]+)"', tool_block).group(1)
    shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri))).convert("RGB")).astype(int)
    assert _red(shown) > 0.003


def test_the_step_evaluation_of_a_run_with_tools_runs_them(tiny_model, tmp_path):
    """`train.eval_steps` with env=zoom: the callback `python -m vlexp` builds evaluates with
    the run's environment, at the limits its trainer's rollouts get (TRL's
    `environment_factory`), and step-N/samples.jsonl holds each rollout turn by turn."""
    from tests.helpers import build_trainer
    from vlexp.evaluation.callback import GenerationEvalCallback

    overrides = ["env=zoom", "data=shapes_zoom", "data.prepare.num_train=8"]
    overrides += ["data.prepare.num_eval=2", "eval.limit=1", "eval.max_new_tokens=64"]
    overrides += ["train.eval_steps=1", "train.max_steps=1", "train.per_device_train_batch_size=4"]
    trainer, _ = build_trainer(overrides, tmp_path)
    (callback,) = [
        c for c in trainer.callback_handler.callbacks if isinstance(c, GenerationEvalCallback)
    ]
    assert callback.agent is not None, "the step evaluation runs without the run's tools"
    # The trainer's own environments (GRPOTrainer made them with the run's factory).
    (trained,) = trainer.environment_factories.values()
    assert callback.agent.factory().limits == trained().limits
    said = _scripted(trainer.model, trainer.processing_class.tokenizer)
    trainer.state.global_step = 1
    callback.run(trainer.args, trainer.state, trainer.control)
    assert said == [CALL, ANSWER]
    lines = (tmp_path / "eval" / "step-1" / "samples.jsonl").read_text().splitlines()
    (sample,) = [json.loads(line) for line in lines]
    assert [t["role"] for t in sample["turns"]] == ["assistant", "tool", "assistant"]
    assert len(sample["turns"][1]["images"]) == 1
