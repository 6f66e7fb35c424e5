"""`python -m vlexp.check_data --show` on every family with a tiny build: each image line
gives the token count the processor makes (Gemma 3 crashed here: its image processor has
no `patch_size`, and `--show` asked for one instead of asking the family)."""

from __future__ import annotations

import re

import pytest

from tests.helpers import REPO
from vlexp.families import FAMILIES


def _presets() -> list[tuple[str, str]]:
    """(family, conf/model preset) for every family with a tiny build, read from conf/."""
    found = []
    for family in (f for f in FAMILIES.values() if f.tiny):
        for path in sorted((REPO / "conf" / "model").glob("tiny*.yaml")):
            if f"name_or_path: tiny://{family.name}\n" in path.read_text():
                found.append((family.name, path.stem))
    return found


@pytest.mark.parametrize("family, preset", _presets(), ids=[f for f, _ in _presets()])
def test_show_counts_each_image_as_the_processor_does(family, preset, capsys):
    from PIL import Image
    from transformers import AutoProcessor

    from vlexp.check_data import main
    from vlexp.models import tiny

    assert main([f"model={preset}", "data.prepare.num_train=8", "--show", "1"]) == 0
    out = capsys.readouterr().out
    width, height, tokens = map(
        int, re.search(r"image 0: (\d+)x(\d+) px, .*: (\d+) tokens", out).groups()
    )
    processor = AutoProcessor.from_pretrained(tiny.ensure(family))
    if FAMILIES[family].pixel_budget:  # the run's pixel budget, as vlexp's loader sets it
        from tests.helpers import compose

        model = compose([f"model={preset}"]).model
        processor.image_processor.size = {
            "shortest_edge": model.min_pixels,
            "longest_edge": model.max_pixels,
        }
    image = Image.new("RGB", (width, height))
    message = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "q"}]}]
    text = processor.apply_chat_template(message, tokenize=False, add_generation_prompt=True)
    expanded = list(processor(text=[text], images=[[image]])["input_ids"][0])
    written = processor.tokenizer(text, add_special_tokens=False)["input_ids"]
    # What the image costs: the processor's expansion of the template's one placeholder
    # (Qwen: n `<|image_pad|>`; Gemma 3: its whole image sequence, markers included).
    assert tokens == len(expanded) - len(written) + 1
