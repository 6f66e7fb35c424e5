"""The data check counts each image as the processor expands it, for every family with a tiny
build (issue 30) and images of several sizes and aspect ratios: Qwen's `smart_resize`,
InternVL's dynamic tiles with a thumbnail, GLM's and MiniCPM-V's slicing.

The reference is the processor itself, as the trainer calls it: the input ids of
`processor(text=..., images=...)` for a one-image prompt, less the ids of the same prompt as
the chat template wrote it (one placeholder per image), plus that placeholder.
"""

from __future__ import annotations

import pytest

from tests.helpers import REPO, compose
from vlexp.families import FAMILIES

# (width, height): square, 4:3, tall and wide strips, one over every toy budget, odd sides.
SIZES = [(64, 64), (224, 168), (30, 200), (500, 40), (1000, 800), (97, 311)]


def _preset(family: str) -> str:
    """The conf/model file whose model is the family's tiny build."""
    for path in sorted((REPO / "conf" / "model").glob("*.yaml")):
        if f"name_or_path: tiny://{family}\n" in path.read_text():
            return path.stem
    raise AssertionError(f"no conf/model file builds tiny://{family}")


def _expanded(processor, width: int, height: int) -> int:
    """Tokens one image adds to a one-turn prompt, as the processor expands it."""
    from PIL import Image

    image = Image.new("RGB", (width, height), (30, 160, 90))
    message = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "q"}]}]
    text = processor.apply_chat_template(message, tokenize=False, add_generation_prompt=True)
    ids = processor(text=[text], images=[[image]])["input_ids"][0]
    written = processor.tokenizer(text, add_special_tokens=False)["input_ids"]
    return len(ids) - len(written) + 1


@pytest.mark.parametrize("family", [f.name for f in FAMILIES.values() if f.tiny])
def test_data_check_counts_each_image_as_the_processor_expands_it(family):
    from vlexp.data.images import token_counter
    from vlexp.models import tiny
    from vlexp.models.loading import load_processor

    tiny.ensure(family)
    model_cfg = compose([f"model={_preset(family)}"]).model
    processor = load_processor(
        model_cfg, FAMILIES[family]
    )  # the run's pixel budget, as training sees it
    count = token_counter(processor, FAMILIES[family])
    counted = {size: count(*size) for size in SIZES}
    expected = {size: _expanded(processor, *size) for size in SIZES}
    assert counted == expected, family
