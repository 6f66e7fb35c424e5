"""DPO: the loss checked against an independent computation, the reference model, the metrics."""

from __future__ import annotations

import copy
import math

import pytest

from tests.data_forms import prefix_jsonl, shapes_records
from tests.helpers import build_trainer, compose, read_metrics

DPO_METRICS = (
    "loss",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
    "logits/chosen",
    "logits/rejected",
)


def completion_logp(model, processor, prompt, image, text: str) -> float:
    """log p(text | prompt, image): summed over the completion tokens, by hand."""
    import torch

    prompt_text = processor.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[prompt_text], images=[image], return_tensors="pt")
    completion = processor.tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
    ids = torch.cat([inputs["input_ids"], completion], dim=1)  # (1, P + C)
    # Qwen2.5-VL places M-RoPE positions by token type (image vs text): completions are text.
    token_types = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(completion)], dim=1)
    with torch.no_grad():
        logits = model(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            mm_token_type_ids=token_types,
            pixel_values=inputs["pixel_values"],
            image_grid_thw=inputs["image_grid_thw"],
        ).logits  # (1, P + C, V)
    logps = torch.log_softmax(logits[0, :-1].float(), dim=-1)  # position t predicts token t + 1
    targets = ids[0, 1:]
    token_logps = logps.gather(1, targets[:, None])[:, 0]  # (P + C - 1,)
    start = inputs["input_ids"].shape[1] - 1
    return float(token_logps[start:].sum())


def test_sigmoid_loss_matches_an_independent_computation(tmp_path, shapes_dir, tiny_model):
    """First logged loss == mean(-logsigmoid(beta * ((pc - rc) - (pr - rr)))) over the batch."""
    import torch
    from PIL import Image

    path = prefix_jsonl(shapes_dir, tmp_path / "d" / "train.jsonl", limit=4)
    beta = 0.5
    overrides = [
        "algo=dpo",
        "data=jsonl",
        f"data.train={path}",
        f"algo.args.beta={beta}",
        "train.per_device_train_batch_size=4",  # the whole set is the first batch
        "train.max_steps=1",
    ]
    # A reference that differs from the policy, or every log-ratio would be 0 at step 1.
    from transformers import AutoModelForImageTextToText

    reference = AutoModelForImageTextToText.from_pretrained(tiny_model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in reference.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=generator))
    policy_copy = AutoModelForImageTextToText.from_pretrained(tiny_model)  # before training
    trainer, _ = build_trainer(overrides, tmp_path / "run", ref_model=copy.deepcopy(reference))
    processor = trainer.processing_class

    dataset = trainer.train_dataset
    margins, chosen_rewards = [], []
    for row in dataset:
        image = row["images"][0] if isinstance(row["images"][0], Image.Image) else None
        logp = {}
        for key in ("chosen", "rejected"):
            text = row[key][0]["content"][0]["text"] + "<|im_end|>\n"
            for name, model in (("policy", policy_copy), ("ref", reference)):
                logp[key, name] = completion_logp(model, processor, row["prompt"], image, text)
        chosen = logp["chosen", "policy"] - logp["chosen", "ref"]
        rejected = logp["rejected", "policy"] - logp["rejected", "ref"]
        margins.append(chosen - rejected)
        chosen_rewards.append(beta * chosen)
    expected = sum(-math.log(1 / (1 + math.exp(-beta * m))) for m in margins) / len(margins)
    assert abs(expected - math.log(2)) > 0.01  # the check is not the trivial policy == ref case

    trainer.train()
    logged = trainer.state.log_history[0]
    assert logged["loss"] == pytest.approx(expected, rel=1e-3)
    assert logged["rewards/chosen"] == pytest.approx(sum(chosen_rewards) / 4, rel=1e-3, abs=1e-4)
    assert logged["rewards/margins"] == pytest.approx(beta * sum(margins) / 4, rel=1e-3, abs=1e-4)


def test_reference_is_a_frozen_copy_without_lora(tmp_path, shapes_dir, tiny_model):
    path = prefix_jsonl(shapes_dir, tmp_path / "d" / "train.jsonl", limit=4)
    trainer, _ = build_trainer(
        ["algo=dpo", "data=jsonl", f"data.train={path}", "train.max_steps=1"], tmp_path / "run"
    )
    ref = trainer.ref_model
    assert ref is not None and ref is not trainer.model
    policy = dict(trainer.model.named_parameters())
    before = {name: param.detach().clone() for name, param in ref.named_parameters()}
    for name, param in ref.named_parameters():  # the same starting weights, separate storage
        assert param.data_ptr() != policy[name].data_ptr()
        assert bool((param == policy[name]).all()), name
    trainer.train()
    trained = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not any(id(p) in trained for p in ref.parameters())  # never optimised
    assert all(bool((p == before[n]).all()) for n, p in ref.named_parameters())
    assert any(not bool((p == before[n]).all()) for n, p in trainer.model.named_parameters())


def test_with_lora_the_reference_is_the_adapter_disabled_base(
    tmp_path, shapes_dir, tiny_model, monkeypatch
):
    import trl.trainer.dpo_trainer as dpo_module

    loads = []
    original = dpo_module.create_model_from_path
    monkeypatch.setattr(
        dpo_module, "create_model_from_path", lambda *a, **k: loads.append(a) or original(*a, **k)
    )
    path = prefix_jsonl(shapes_dir, tmp_path / "d" / "train.jsonl", limit=4)
    trainer, _ = build_trainer(
        ["algo=dpo", "data=jsonl", f"data.train={path}", "memory=lora", "train.max_steps=1"],
        tmp_path / "run",
    )
    assert trainer.ref_model is None and loads == []  # no second model was loaded
    trainer.train()  # the reference pass runs with the adapter disabled
    assert trainer.state.log_history[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("memory", ["none", "[lora,grad_ckpt]"])
def test_dpo_run_logs_trl_metrics_to_metrics_jsonl(tmp_path, shapes_dir, tiny_model, memory):
    from vlexp.recipe.run import train

    cfg = compose(
        ["algo=dpo", f"memory={memory}", "train.max_steps=2", "data.prepare.num_train=64"]
    )
    train(cfg, tmp_path)
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        for name in DPO_METRICS:
            assert isinstance(row[name], float) and math.isfinite(row[name]), (name, row)
        assert 0.0 <= row["rewards/accuracies"] <= 1.0
    assert rows[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-6)  # policy == reference
    assert rows[1]["rewards/margins"] != 0.0
    final = tmp_path / "final"
    expected = "adapter_config.json" if memory != "none" else "model.safetensors"
    assert (final / expected).is_file() and (final / "processor_config.json").is_file()


def test_shapes_supplies_dpo_pairs(shapes_dir):
    from vlexp.data import build_datasets

    cfg = compose(["algo=dpo"])
    train, _ = build_datasets(cfg.data, "dpo")
    first = shapes_records(shapes_dir, limit=1)[0]
    assert train[0]["chosen"][0]["content"][0]["text"] == first["suffix"]
    assert train[0]["rejected"][0]["content"][0]["text"] == first["rejected"]
    assert first["suffix"] != first["rejected"]
