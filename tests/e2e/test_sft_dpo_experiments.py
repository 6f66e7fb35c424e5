"""The SFT/DPO presets compose from the groups and run with the tiny model on local data."""

from __future__ import annotations

import math

from tests.data_forms import preference_dataset, prefix_jsonl
from tests.helpers import compose, read_metrics


def test_docparse_sft_preset_runs_on_tiny_with_local_pages(tmp_path, shapes_dir, tiny_model):
    from vlexp.recipe.run import train
    from vlexp.validate import validate

    preset = compose(["experiment=docparse_sft", "data.train=/data/docs/train.jsonl"])
    assert preset.model.name_or_path == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert preset.algo.kind == "sft" and preset.data.name == "jsonl"
    assert preset.memory.peft.target_modules == r".*language_model.*\.(q_proj|v_proj)"
    assert preset.data.boxes.rescale is True and preset.memory.gradient_checkpointing

    path = prefix_jsonl(shapes_dir, tmp_path / "docs" / "train.jsonl", limit=8, html=True)
    cfg = compose(
        [
            "experiment=docparse_sft",
            "model=tiny",
            f"data.train={path}",
            "train.max_steps=2",
            "train.gradient_accumulation_steps=1",
            "train.logging_steps=1",
        ]
    )
    validate(cfg)
    train(cfg, tmp_path / "run")
    rows = read_metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2] and all(math.isfinite(r["loss"]) for r in rows)
    adapter = (tmp_path / "run" / "final" / "adapter_config.json").read_text()
    assert "q_proj|v_proj" in adapter


def test_rlaif_v_dpo_preset_runs_on_tiny_with_a_local_copy(tmp_path, shapes_dir, tiny_model):
    from vlexp.recipe.run import train
    from vlexp.validate import validate

    preset = compose(["experiment=rlaif_v_dpo"])
    assert preset.model.name_or_path == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert preset.algo.kind == "dpo" and preset.data.name == "HuggingFaceH4/rlaif-v_formatted"
    assert preset.memory.peft is not None  # the adapter-disabled base is the reference

    saved, _ = preference_dataset(shapes_dir, tmp_path, limit=8)
    cfg = compose(
        [
            "experiment=rlaif_v_dpo",
            "model=tiny",
            f"data.name={saved}",
            "train.max_steps=2",
            "train.gradient_accumulation_steps=1",
            "train.logging_steps=1",
        ]
    )
    validate(cfg)
    train(cfg, tmp_path / "run")
    rows = read_metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2]
    assert all(math.isfinite(r["rewards/margins"]) for r in rows)
    assert (tmp_path / "run" / "final" / "adapter_model.safetensors").is_file()
