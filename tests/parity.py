"""Training equals inference: what a trainer's own step computes, per token, against the model's
own forward on the processor's output for the same conversation (tests/unit/test_parity.py).

The trainer side is read where every forward of every trainer passes: the backbone module of
the trained model (`model.model`: the multimodal wrapper that places the vision features and
computes the positions). A forward hook records the hidden states of each call the trainer
makes in one `training_step` (generation calls excluded); the model's own head turns them into
per-token log-probabilities (`lm_head`) or values (`score`, value-head models).

The reference is independent of vlexp's data and trainer code: the record's conversation through
`processor.apply_chat_template` and `processor(text=..., images=...)`, then `model(**inputs)`,
one conversation at a time, unpadded. For algorithms that generate, the reference is the
prompt's processor output followed by the trainer's own sampled completion tokens, which is
what inference forwards after `generate`.

A trainer row is compared with a reference when one's token ids are a prefix of the other's
(TRL may append an EOS after the chat template's end of turn; truncation may cut the end); every
real (non-padding) token of that common part is compared. Rows of a pass that match no
conversation at all (KTO's KL estimate pairs prompts with other rows' completions) are not
references' business; every row of any other pass must match one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from tests.helpers import REPO

ALGO_DIR = REPO / "conf" / "algo"


# ----------------------------------------------------------------- the registry rows


def algo_node(path: Path) -> Any:
    """The `algo` node of an algo file (`# @package _global_` files nest it under `algo:`)."""
    raw = OmegaConf.load(path)
    return raw.algo if "algo" in raw and "trainer" not in raw else raw


def forward_groups() -> dict[str, list[str]]:
    """Algo files grouped by the trainer and config classes they name (one forward each),
    keyed by the group's label: its algorithm names joined with '+'."""
    groups: dict[tuple[str, str], list[str]] = {}
    for path in sorted(ALGO_DIR.glob("*.yaml")):
        node = algo_node(path)
        key = (str(node.trainer._target_), str(node.args._target_))
        groups.setdefault(key, []).append(path.stem)
    return {"+".join(names): names for names in groups.values()}


# ----------------------------------------------------------------- the trainer side


@dataclass
class Call:
    """One backbone forward of the trainer: its real tokens and outputs per row."""

    rows: list[Any]  # per row: 1-D token ids of the real (attended) tokens
    outputs: list[Any]  # per row: (T,) log-prob of each token given the ones before (0: nan),
    # or (T,) value at each token for value-head models


@dataclass
class Probe:
    """A trained module (policy or value head) and the backbone calls recorded on it."""

    module: Any
    head: str  # "logps" | "values"
    calls: list[Call] = field(default_factory=list)

    def hook(self, backbone: Any, args: tuple, kwargs: dict, output: Any) -> None:
        import torch

        ids = kwargs["input_ids"]
        mask = kwargs.get("attention_mask")
        mask = torch.ones_like(ids) if mask is None else mask
        cached = any(kwargs.get(k) is not None for k in ("cache", "past_key_values"))
        if cached or kwargs.get("use_cache") or mask.shape != ids.shape:
            return  # a generation step (prefill or decode), not a training forward
        with torch.no_grad():
            per_token = head_outputs(self.module, self.head, output.last_hidden_state, ids)
        real = [mask[row].bool() for row in range(ids.shape[0])]
        self.calls.append(
            Call(
                rows=[ids[row][keep].cpu() for row, keep in enumerate(real)],
                outputs=[per_token[row][keep].float().cpu() for row, keep in enumerate(real)],
            )
        )


def head_outputs(module: Any, head: str, hidden: Any, ids: Any) -> Any:
    """(B, T) per-token log-probs (position 0: nan) or values, from hidden states (B, T, H)."""
    import torch

    if head == "values":
        return module.score(hidden).squeeze(-1)
    logits = module.lm_head(hidden)
    cap = getattr(module.config.get_text_config(), "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap  # as the causal-LM forward does
    return shifted_logps(logits, ids)


def shifted_logps(logits: Any, ids: Any) -> Any:
    """(B, T) log p(token t | tokens < t) from (B, T, V) logits; position 0 has no value (nan)."""
    import torch

    logps = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, ids[:, 1:, None])[..., 0]
    first = torch.full_like(logps[:, :1], float("nan"))
    return torch.cat([first, logps], 1)


def probes_of(trainer: Any) -> list[Probe]:
    """What the trainer trains, by structure: an actor-critic pair (vlexp's PPO: `policy` and
    `critic`), a value-head model (`score`: the reward model), or a causal LM."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    if hasattr(model, "policy") and hasattr(model, "critic"):
        return [Probe(model.policy, "logps"), Probe(model.critic, "values")]
    if hasattr(model, "score"):
        return [Probe(model, "values")]
    return [Probe(model, "logps")]


def run_one_step(trainer: Any, probes: list[Probe]) -> None:
    """One micro-step as `Trainer.train` runs it: a batch from the trainer's own dataloader
    (sampler + collator), then its own `training_step` (inputs, generation, loss, backward)."""
    handles = [p.module.model.register_forward_hook(p.hook, with_kwargs=True) for p in probes]
    try:
        batch = next(iter(trainer.get_train_dataloader()))
        trainer.model.train()
        trainer.current_gradient_accumulation_steps = 1  # what Trainer.train sets first
        trainer.training_step(trainer.model, batch, None)  # num_items_in_batch: not known here
    finally:
        for handle in handles:
            handle.remove()
        trainer.model.zero_grad(set_to_none=True)


# ----------------------------------------------------------------- the reference side


@dataclass
class Reference:
    """One conversation as inference sees it: `processor(apply_chat_template(...))`."""

    inputs: dict  # the processor's output, batch of 1
    generation: bool  # a prompt the trainer generates after (its completion ids are appended)

    @property
    def ids(self) -> list[int]:
        return self.inputs["input_ids"][0].tolist()


def conversations(row: dict) -> list[tuple[list, bool]]:
    """(messages, is_prompt) of a data-set row in vlexp's trainer-neutral form: prompt/chosen/
    rejected (two conversations), prompt/completion, messages, or a prompt alone."""
    if "messages" in row and row["messages"]:
        return [(list(row["messages"]), False)]
    prompt = list(row["prompt"])
    answers = [row[key] for key in ("chosen", "rejected", "completion") if row.get(key)]
    if not answers:
        return [(prompt, True)]
    return [(prompt + list(answer), False) for answer in answers]


def reference(processor: Any, messages: list, images: list, videos: Any, prompt: bool):
    """The processor's model inputs for one conversation (the model's own chat template)."""
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt)
    kwargs: dict[str, Any] = {"text": [text], "return_tensors": "pt"}
    if images:
        kwargs["images"] = [[image.convert("RGB") for image in images]]
    if videos is not None:
        kwargs.update(videos)
    return Reference(dict(processor(**kwargs)), prompt)


def reference_outputs(module: Any, head: str, ref: Reference, row_ids: Any) -> Any:
    """(T,) per-token log-probs or values of the model's own forward on the reference; for a
    prompt, on the prompt followed by the row's completion (per-token fields extended: the
    completion is text, so its token types are 0)."""
    import torch

    inputs = dict(ref.inputs)
    if ref.generation:
        width = inputs["input_ids"].shape[1]
        completion = row_ids[width:][None]  # (1, C): the trainer's sampled tokens
        for key, value in inputs.items():
            if torch.is_tensor(value) and value.shape == (1, width):  # a per-token field
                tail = torch.zeros_like(completion)  # token types: text
                if key == "input_ids":
                    tail = completion
                elif key == "attention_mask":
                    tail = torch.ones_like(completion)
                inputs[key] = torch.cat([value, tail.to(value.dtype)], 1)
    with torch.no_grad():
        out = module(**inputs, use_cache=False)
    if head == "values":
        return out.token_values[0].float()
    return shifted_logps(out.logits, inputs["input_ids"])[0]


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def matches(ref: Reference, row: list[int]) -> int:
    """Tokens compared when `row` is the trainer's form of `ref` (0: it is not)."""
    ids = ref.ids
    if ref.generation:
        return len(row) if row[: len(ids)] == ids and len(row) > len(ids) else 0
    common = common_prefix(ids, row)
    return common if common == min(len(ids), len(row)) else 0


@dataclass
class Comparison:
    rows: int = 0  # trainer rows compared
    tokens: int = 0  # tokens compared
    worst: float = 0.0  # largest |trainer - reference| over them
    problems: list[str] = field(default_factory=list)


def compare(probe: Probe, refs: list[Reference], atol: float) -> Comparison:
    """Every recorded row against the references it matches (see the module docstring)."""
    result = Comparison()
    cache: dict[tuple, Any] = {}  # reference outputs, computed once per (conversation, row)
    for number, call in enumerate(probe.calls):
        found = [[(i, n) for i, ref in enumerate(refs) if (n := matches(ref, row.tolist()))]
                 for row in call.rows]  # fmt: skip
        if not any(found):
            continue  # a pass over other pairings (KTO's KL estimate), not a conversation
        rows = zip(call.rows, call.outputs, found, strict=True)
        for index, (row, out, candidates) in enumerate(rows):
            where = f"call {number} row {index} ({len(row)} tokens)"
            if not candidates:
                result.problems.append(f"{where}: matches no conversation of the batch's data")
                continue
            # Two records may give the same ids (same question, answer and image size): the
            # row is right when it agrees with one of them.
            diff, n = min(difference(probe, refs, row, out, c, cache) for c in candidates)
            result.rows, result.tokens = result.rows + 1, result.tokens + n
            result.worst = max(result.worst, diff)
            if not diff <= atol:
                result.problems.append(f"{where}: max |trainer - model| = {diff:.3g} over {n}")
    return result


def difference(probe: Probe, refs: list, row: Any, out: Any, candidate: tuple, cache: dict):
    """(max |trainer - reference|, tokens compared) of one row against one conversation."""
    ref_index, n = candidate
    key = (ref_index, tuple(row.tolist()) if refs[ref_index].generation else ())
    if key not in cache:
        cache[key] = reference_outputs(probe.module, probe.head, refs[ref_index], row)
    start = 0 if probe.head == "values" else 1  # log-probs start at token 1
    return (out[start:n] - cache[key][start:n]).abs().max().item(), n


def video_inputs(cfg: Any, row: dict, patch_size: int) -> dict:
    """The processor's video arguments for a row, the way Qwen's model cards run inference:
    qwen-vl-utils' `process_vision_info` with `data.video`'s frame rate and pixel limits, then
    the processor without resizing or resampling again."""
    from qwen_vl_utils import process_vision_info

    video = cfg.data.video
    content = []
    for item in row["videos"]:
        element = {"type": "video", "video": item["path"] or list(item["frames"])}
        if item["frames"]:
            element["sample_fps"] = video.fps
        else:
            element["fps"] = video.fps
        for key in ("min_pixels", "max_pixels", "total_pixels"):
            if video.get(key) is not None:
                element[key] = video[key]
        content.append(element)
    _, videos, kwargs = process_vision_info(
        [{"role": "user", "content": content}],
        image_patch_size=patch_size,
        return_video_kwargs=True,
        return_video_metadata=True,
    )
    frames, metadata = zip(*videos, strict=True)
    return {
        "videos": list(frames),
        "video_metadata": list(metadata),
        "do_resize": False,
        "do_sample_frames": False,
        **kwargs,
    }
