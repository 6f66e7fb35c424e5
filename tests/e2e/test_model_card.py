"""The model card's "Use" code runs as printed: copied out of README.md (in the run dir and in
final/) and run by a fresh interpreter from another directory, it loads what final/ holds,
the full weights or the base model plus the LoRA adapter, with plain transformers and peft."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.helpers import compose

# The trained weights must be what the card's code loads: the loaded model's parameters are
# compared with final/'s own files (safetensors), not with anything vlexp computes.
CHECK = """
import torch
from pathlib import Path
from safetensors.torch import load_file

saved = load_file(str(Path({final!r}) / {weights!r}))
# peft names a loaded adapter's weights `lora_A.default.weight`; its file says `lora_A.weight`.
loaded = {{n.replace(".default.", "."): p for n, p in model.named_parameters()}}
matched = 0
for name, tensor in saved.items():
    hits = [p for n, p in loaded.items() if n.endswith(name) or name.endswith(n)]
    if hits:
        matched += 1
        assert any(torch.equal(p.detach().cpu(), tensor) for p in hits), name
assert matched > 0
print("LOADED", type(model).__name__, type(processor).__name__, matched)
"""


def card_code(card: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", card, flags=re.DOTALL)
    assert len(blocks) == 1, blocks
    return blocks[0]


@pytest.mark.parametrize("memory", ["none", "lora"])
def test_the_model_card_code_runs_as_printed(memory, tmp_path, tiny_model, shapes_dir):
    from vlexp.recipe.run import train

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    overrides = ["algo=sft", f"memory={memory}", "train.max_steps=2", "data.prepare.num_train=16"]
    train(compose(overrides), run_dir)
    final = run_dir / "final"
    cards = [(run_dir / "README.md").read_text(), (final / "README.md").read_text()]
    assert cards[0] == cards[1]
    code = card_code(cards[0])
    assert "tiny://" not in code
    weights = "adapter_model.safetensors" if memory == "lora" else "model.safetensors"
    elsewhere = tmp_path / "elsewhere"  # not the repository, not the run dir
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VLEXP_CACHE")}
    done = subprocess.run(
        [sys.executable, "-c", code + CHECK.format(final=str(final), weights=weights)],
        cwd=elsewhere,
        env={**env, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, code + done.stderr[-3000:]
    kind = "PeftModel" if memory == "lora" else "ForConditionalGeneration"
    assert kind in done.stdout and "Processor" in done.stdout, done.stdout
