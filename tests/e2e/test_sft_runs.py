"""SFT runs: LoRA touches only the language model, freeze_vision freezes the vision side,
final/ reloads (adapter onto the base, or the full model) and generates."""

from __future__ import annotations

import math

import pytest

from tests.data_forms import messages_jsonl, shapes_records
from tests.helpers import build_trainer, compose, read_metrics


def generate(model, processor, image, question: str) -> str:
    import torch

    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}
    ]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[prompt], images=[image], return_tensors="pt")
    torch.manual_seed(0)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    new = out[0, inputs["input_ids"].shape[1] :]
    assert len(new) > 0
    return processor.tokenizer.decode(new, skip_special_tokens=True)


def test_lora_targets_only_language_model_projections(tmp_path, shapes_dir, tiny_model):
    trainer, _ = build_trainer(["algo=sft", "memory=lora", "data.prepare.num_train=64"], tmp_path)
    adapted = {
        n.rsplit(".lora_A", 1)[0] for n, _ in trainer.model.named_parameters() if ".lora_A" in n
    }
    layers = 2  # the tiny model's text layers
    assert len(adapted) == 7 * layers
    assert all(".language_model." in name for name in adapted)
    assert not any(".visual." in name for name in adapted)
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n for n in trainable)


def test_lora_sft_saves_an_adapter_that_reloads_onto_the_base(tmp_path, shapes_dir, tiny_model):
    import torch
    from peft import PeftModel
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vlexp.recipe.run import train

    cfg = compose(
        ["algo=sft", "memory=[lora,grad_ckpt]", "train.max_steps=3", "data.prepare.num_train=64"]
    )
    train(cfg, tmp_path)
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [1, 2, 3] and all(math.isfinite(r["loss"]) for r in rows)
    final = tmp_path / "final"
    assert (final / "adapter_config.json").is_file()
    assert (final / "adapter_model.safetensors").is_file()
    assert not (final / "model.safetensors").exists()  # the adapter, not a copy of the base

    processor = AutoProcessor.from_pretrained(final)
    base = AutoModelForImageTextToText.from_pretrained(tiny_model)
    record = shapes_records(shapes_dir, limit=1)[0]
    image = Image.open(shapes_dir / record["image"]).convert("RGB")
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[image], return_tensors="pt")
    with torch.no_grad():
        base_logits = base(**inputs).logits
    model = PeftModel.from_pretrained(base, final)
    with torch.no_grad():
        tuned_logits = model(**inputs).logits
    assert not torch.allclose(base_logits, tuned_logits)  # the trained adapter is applied
    assert isinstance(generate(model, processor, image, record["prefix"]), str)


def test_full_sft_with_frozen_vision_saves_a_loadable_model(tmp_path, shapes_dir, tiny_model):
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vlexp.recipe.run import train

    cfg = compose(
        [
            "algo=sft",
            "memory=none",
            "model.freeze_vision=true",
            "train.max_steps=2",
            "data.prepare.num_train=64",
        ]
    )
    train(cfg, tmp_path)
    final = tmp_path / "final"
    tuned = AutoModelForImageTextToText.from_pretrained(final)
    base = AutoModelForImageTextToText.from_pretrained(tiny_model)
    base_params = dict(base.named_parameters())
    vision_same = text_changed = 0
    for name, param in tuned.named_parameters():
        same = torch.equal(param, base_params[name])
        if ".visual." in f".{name}":
            assert same, f"{name} changed although model.freeze_vision=true"
            vision_same += 1
        elif ".language_model." in name:
            text_changed += not same
    assert vision_same > 0 and text_changed > 0
    processor = AutoProcessor.from_pretrained(final)
    record = shapes_records(shapes_dir, limit=1)[0]
    image = Image.open(shapes_dir / record["image"]).convert("RGB")
    assert isinstance(generate(tuned, processor, image, record["prefix"]), str)


def test_freeze_vision_leaves_only_the_language_side_trainable(tmp_path, tiny_model):
    from vlexp.models.loading import load_model

    cfg = compose(["model.freeze_vision=true"])
    model = load_model(cfg.model, cfg.memory)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith("model.visual.") for n in frozen)
    assert any(n.startswith("model.visual.merger.") for n in frozen)  # merger included
    assert all(p.requires_grad for n, p in model.named_parameters() if ".visual." not in f".{n}")


@pytest.mark.parametrize("memory", ["[lora,grad_ckpt]"])
def test_messages_sft_trains_with_lora_and_checkpointing(tmp_path, shapes_dir, tiny_model, memory):
    from vlexp.recipe.run import train

    path = messages_jsonl(shapes_dir, tmp_path / "data" / "train.jsonl", limit=8)
    cfg = compose(
        [
            "algo=sft",
            f"memory={memory}",
            "data=jsonl",
            f"data.train={path}",
            # the records point at the shapes images with absolute file:// paths
            f"data.allowed_image_roots=[{shapes_dir}]",
            "train.max_steps=2",
        ]
    )
    (tmp_path / "run").mkdir()
    train(cfg, tmp_path / "run")
    rows = read_metrics(tmp_path / "run")
    assert len(rows) == 2 and all(math.isfinite(r["loss"]) and r["loss"] > 0 for r in rows)
