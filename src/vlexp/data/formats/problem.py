"""One question, its image(s) and its gold answer per row: vlexp's own prefix/suffix records
and the RL rows of R1-V, VLM-R1, Visual-RFT, EasyR1 and open-r1-multimodal, read as they read
them.

    {"image": "a.png", "prefix": "How many?", "suffix": "2", "solution": "2"}      vlexp
    {"image": <image>, "problem": "How many?", "solution": "<answer> 2 </answer>"}  R1-V, open-r1
    {"image_path": "./images/a.png", "question": "How many?", "ground_truth": 4}    R1-V eval
    {"images": [<image>], "problem": "<image>Find x.", "answer": "3"}               EasyR1

The gold answer goes to `solution` (what vlexp's rewards read) when the row has none:
`answer` (EasyR1's answer_key) or `ground_truth` (R1-V's evaluation files); the original
column stays for rewards of your own. `image_path` (R1-V, Visual-RFT) is the row's image.
`<image>` tags in the question place the images (EasyR1 splits the problem at them).
"""

from __future__ import annotations

from vlexp.data.formats.tags import check_counts, count_tags
from vlexp.data.schema import QUESTION_KEYS

GOLD_KEYS = ("answer", "ground_truth")


def problem_row(fields: dict) -> dict:
    out = dict(fields)
    if "image" not in out and "images" not in out and out.get("image_path") is not None:
        out["image"] = out["image_path"]
    if "solution" not in out and "suffix" not in out:
        for key in GOLD_KEYS:
            if out.get(key) is not None:
                out["solution"] = out[key]
                break
    question = next((out[k] for k in QUESTION_KEYS if k in out), None)
    if isinstance(question, str):
        found = {kind: count_tags(question, kind) for kind in ("image", "video")}
        check_counts(out, found, "the question")
    return out


def standard(fields: dict) -> dict:
    """TRL's standard (non-conversational) rows: string `prompt` + `completion` or
    `chosen`/`rejected` -> vlexp's prefix form."""
    out = {k: v for k, v in fields.items() if k not in ("prompt", "completion")}
    out["prefix"] = fields["prompt"]
    if isinstance(fields.get("completion"), str):
        out["suffix"] = fields["completion"]
    return problem_row(out)
