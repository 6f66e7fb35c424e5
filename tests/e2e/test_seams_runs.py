"""The algorithm seam end to end: a renamed algorithm and a user's GRPOTrainer subclass get
the metrics and resume handling of the originals (tiny model, CPU)."""

from __future__ import annotations

from tests.e2e.inprocess import RECORDER, train_in_process
from tests.e2e.test_reward_model_ppo import PPO_METRICS, PPO_SMALL
from tests.helpers import compose, read_metrics, run_cli


def test_a_renamed_ppo_logs_the_ppo_metrics(tiny_model, tmp_path):
    result = run_cli(*PPO_SMALL, "algo.name=my_ppo", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_metrics(tmp_path)
    assert len(rows) == 4 and set(rows[0]) >= PPO_METRICS
    assert (tmp_path / "final" / "critic").is_dir()


def test_a_grpo_subclass_resumes_with_the_trained_weights(tiny_model, tmp_path):
    """transformers' Trainer resume misses the language model's keys of a full-weight
    Qwen2.5-VL checkpoint (vlexp.recipe.resume); the fix must reach a subclass of
    GRPOTrainer too, or the resumed model silently keeps its initial language model."""
    import torch
    from safetensors.torch import load_file

    from vlexp.recipe.run import build

    small = ["train.max_steps=2", "train.save_steps=2", "data.prepare.num_train=32"]
    trainer, _ = train_in_process(small, tmp_path / "first")
    assert type(trainer).__mro__[1].__name__ == "TextPromptsMixin"  # vlexp's mixins reached it
    checkpoint = tmp_path / "first" / "checkpoint-2"
    saved = load_file(checkpoint / "model.safetensors")

    cfg = compose([*small, f"algo.trainer._target_={RECORDER}", f"+resume={checkpoint}"])
    (tmp_path / "second").mkdir()
    built = build(cfg, tmp_path / "second")
    built.trainer.train(resume_from_checkpoint=built.checkpoint)  # at step 2: loads, no step
    model = built.trainer.model
    language = {n: p for n, p in model.state_dict().items() if ".language_model." in f".{n}"}
    assert language, "no language-model parameters found"
    # The checkpoint keeps the legacy names (model.layers.*); compare by the layer suffix.
    legacy = {n.split("layers.", 1)[-1]: t for n, t in saved.items() if "layers." in n}
    compared = 0
    for name, tensor in language.items():
        if "layers." in name and name.split("layers.", 1)[-1] in legacy:
            assert torch.equal(tensor, legacy[name.split("layers.", 1)[-1]]), name
            compared += 1
    assert compared >= 10
