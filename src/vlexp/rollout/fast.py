"""`rollout=hf_fast`: HF generate for VLMs made fast without changing what it samples.

`FastGenerate` stands in for a model's `generate` (the one method every trainer and the
evaluation call) and, per call:

1. share_images: rows that repeat one prompt (TRL's GRPO repeats each prompt num_generations
   times, consecutively) are generated once with `num_return_sequences=k`: the prompt's
   prefill and its image's vision-tower pass run once, not k times. transformers' own
   `_expand_inputs_for_generation` copies the image features to the k rows;
2. buckets: prompts are left-padded to a power-of-two length (>= min_bucket) and the batch
   is filled up to a power of two with copies of its last row (dropped after), so a static
   cache and the compiled decode step see a few shapes, each compiled once;
3. static_cache / compile: `cache_implementation="static"` with a `CompileConfig`
   (mode reduce-overhead = CUDA graphs on CUDA); transformers compiles the decode step;
4. merge_lora: PEFT's `merge_adapter()` folds the LoRA adapters into the weights for the
   call; after it `unmerge_adapter()` runs and the base weights are copied back from a saved
   copy, bit for bit (unmerging in bf16 alone would leave rounding in the frozen weights at
   every step).

The greedy tokens and log-probabilities equal plain generate's (tests/unit/test_rollout.py,
every tiny family). TRL's log-prob and loss passes forward each chunk of rows with that
chunk's pixel_values, k copies of a prompt's image among them: `vlexp.rollout.images`
makes the vision tower encode each distinct image of a forward once (Qwen families; logits and
gradients equal the model's own forward).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any

from vlexp.rollout.rows import TOKEN_FIELDS, bucket, groups_of_repeats, split_rows

log = logging.getLogger("vlexp")


def dynamo_graphs() -> int:
    """Graphs Dynamo compiled in this process so far (each recompilation adds one)."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:  # a torch without Dynamo compiles nothing
        return 0
    return int(counters["stats"]["unique_graphs"])


class FastGenerate:
    """A model's `generate` with the hf_fast steps of the module docstring around it."""

    def __init__(self, model: Any, settings: Any, inner: Any = None) -> None:
        self.model = model
        # The generate it runs: the model class's own (vlexp.rollout.PolicyGenerate), or the
        # model's public one when the engine is used on its own.
        self.inner = inner if inner is not None else model.generate
        self.settings = settings
        self.cuda = _device(model).type == "cuda"
        self.compiled = settings.compiles(self.cuda)
        self.graphs_at_start = dynamo_graphs()
        self.graphs = 0  # graphs Dynamo compiled inside generate calls

    def recompiles(self) -> float:
        """`perf/recompiles`: graphs compiled for generation so far (flat once every bucket
        has been seen; one that keeps rising means a shape escapes the buckets)."""
        return float(self.graphs)

    def describe(self) -> str:
        s = self.settings
        compile_how = "off"
        if self.compiled:
            compile_how = "CUDA graphs" if self.cuda and s.cuda_graphs else "no CUDA graphs"
        return (
            f"merge LoRA {s.merge_lora}, static cache {s.static_cache} (compile: {compile_how}), "
            f"buckets {s.buckets} (min {s.min_bucket}), one generate per unique prompt "
            f"{s.share_images}"
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if args:  # generate(input_ids, ...) positional
            kwargs["input_ids"] = args[0]
            args = args[1:]
        before = dynamo_graphs()
        try:
            with self.merged():
                try:
                    return self._generate(args, kwargs)
                except Exception as err:
                    if not self.compiled or _out_of_memory(err):
                        raise
                    # A model or torch version whose decode step does not compile must not
                    # stop training: the same rollout, uncompiled, from here on.
                    log.warning(
                        "rollout: the compiled decode step failed (%s: %s); generating without "
                        "torch.compile from now on (set rollout.compile=false to skip the try)",
                        type(err).__name__,
                        str(err).splitlines()[0][:300] if str(err) else "",
                    )
                    self.compiled = False
                    return self._generate(args, kwargs)
        finally:
            self.graphs += dynamo_graphs() - before

    def _generate(self, args: tuple, kwargs: dict) -> Any:
        config = getattr(self.model, "config", None)
        inputs = {k: v for k, v in kwargs.items() if not _is_setting(k, v)}
        settings = {k: v for k, v in kwargs.items() if k not in inputs}
        settings.update(self.cache_settings())
        if settings.get("generation_config") is not None:
            # Our settings go into a copy of the caller's config: transformers deprecates
            # passing a generation_config together with loose generation arguments.
            settings = _into_config(settings)
        rows = split_rows(inputs, config) if self.settings.fast_rows else None
        if rows is None:
            return self.inner(*args, **inputs, **settings)
        batch, length = rows.ids.shape
        kept = batch * _returns(settings, self.model)  # the rows the caller asked for
        k = groups_of_repeats(rows) if self.settings.share_images else 1
        repeat = 1
        if k > 1 and kept == batch:
            rows = rows.pick(list(range(0, batch, k)))
            if _samples(settings, self.model):
                settings = _into_config({**settings, "num_return_sequences": k})
            else:  # greedy: the k copies of a prompt get the same completion; copy it
                repeat = k
        unique = rows.ids.shape[0]
        if self.settings.buckets:
            rows = rows.left_pad(
                bucket(length, self.settings.min_bucket), _pad_id(settings, self.model)
            )
            fill = bucket(unique) - unique
            rows = rows.pick(list(range(unique)) + [unique - 1] * fill)
        output = self.inner(*args, **rows.inputs(), **settings)
        extra = rows.ids.shape[1] - length
        return _trim(output, kept, extra, repeat)

    def cache_settings(self) -> dict[str, Any]:
        if not self.settings.static_cache:
            return {}
        out: dict[str, Any] = {"cache_implementation": "static"}
        if not self.compiled:
            out["disable_compile"] = True
            return out
        from transformers import CompileConfig

        mode = "reduce-overhead" if self.cuda and self.settings.cuda_graphs else "default"
        backend = self.settings.compile_backend
        compile_config = CompileConfig(fullgraph=False, dynamic=False, mode=mode, backend=backend)
        if not self.cuda:
            compile_config._compile_all_devices = True  # transformers compiles on CUDA only
        out["compile_config"] = compile_config
        return out

    @contextmanager
    def merged(self):
        """LoRA adapters folded into the weights for the call; the base weights restored."""
        layers = _lora_layers(self.model) if self.settings.merge_lora else []
        if not layers:
            yield
            return
        import torch

        with torch.no_grad():
            saved = [
                (w, w.detach().clone()) for w in (layer.get_base_layer().weight for layer in layers)
            ]
            _merge(self.model, layers)
        try:
            yield
        finally:
            with torch.no_grad():
                _unmerge(self.model, layers)
                for weight, copy in saved:
                    weight.copy_(copy)  # unmerging in bf16 would leave rounding behind


def _merge(model: Any, layers: list) -> None:
    """PEFT's merge_adapter on a PEFT model; on the base model inside one (the policy class's
    own generate sees that) the same per layer: each LoRA layer's `merge()`."""
    if callable(getattr(model, "merge_adapter", None)):
        model.merge_adapter()
        return
    for layer in layers:
        layer.merge()


def _unmerge(model: Any, layers: list) -> None:
    if callable(getattr(model, "unmerge_adapter", None)):
        model.unmerge_adapter()
        return
    for layer in layers:
        layer.unmerge()


def _out_of_memory(err: BaseException) -> bool:
    return "out of memory" in str(err).lower() or type(err).__name__ == "OutOfMemoryError"


def _into_config(settings: dict) -> dict:
    """Loose generation settings folded into a copy of settings["generation_config"]."""
    import copy

    config = settings.get("generation_config")
    if config is None:
        return settings
    loose = {k: v for k, v in settings.items() if k != "generation_config"}
    config = copy.deepcopy(config)
    unused = config.update(**loose)  # what is not a generation setting goes to the model
    return {"generation_config": config, **unused}


def _device(model: Any):
    import torch

    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


def _is_setting(key: str, value: Any) -> bool:
    """Generation settings (passed through untouched) as opposed to model inputs."""
    import torch

    if key in ("input_ids", "inputs_embeds") or key in TOKEN_FIELDS:
        return False
    return not isinstance(value, torch.Tensor)


def _returns(settings: dict, model: Any) -> int:
    if settings.get("num_return_sequences") is not None:
        return int(settings["num_return_sequences"])
    config = settings.get("generation_config") or getattr(model, "generation_config", None)
    return int(getattr(config, "num_return_sequences", 1) or 1)


def _pad_id(settings: dict, model: Any) -> int:
    config = settings.get("generation_config") or getattr(model, "generation_config", None)
    for source in (settings, config):
        pad = (
            source.get("pad_token_id")
            if isinstance(source, dict)
            else getattr(source, "pad_token_id", None)
        )
        if pad is not None:
            return int(pad)
    return 0  # masked out by the attention mask whatever it is


def _trim(output: Any, rows: int, extra: int, repeat: int = 1) -> Any:
    """The caller's `rows` rows (each row `repeat`ed first) without the `extra` left padding
    columns vlexp added; per-step scores/logits of a dict output likewise."""
    import torch

    def cut(tensor: Any, columns: bool) -> Any:
        tensor = tensor.repeat_interleave(repeat, dim=0) if repeat > 1 else tensor
        return tensor[:rows, extra:] if columns else tensor[:rows]

    if isinstance(output, torch.Tensor):
        return cut(output, True)
    if getattr(output, "sequences", None) is not None:
        output.sequences = cut(output.sequences, True)
    for name in ("scores", "logits"):
        steps = getattr(output, name, None)
        if steps is not None:
            setattr(output, name, tuple(cut(step, False) for step in steps))
    return output


def _samples(settings: dict, model: Any) -> bool:
    """Whether the call samples (do_sample), as generate will decide it."""
    if settings.get("do_sample") is not None:
        return bool(settings["do_sample"])
    config = settings.get("generation_config") or getattr(model, "generation_config", None)
    return bool(getattr(config, "do_sample", False))


def _lora_layers(model: Any) -> list:
    """The LoRA layers of a PEFT model (none for a plain model or QLoRA's 4-bit layers, whose
    merge would dequantize and round the weights)."""
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:  # no PEFT installed: no adapters to merge
        return []

    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    if not layers:
        return []
    if any(
        getattr(layer.get_base_layer(), "quant_state", None) is not None
        or type(layer.get_base_layer().weight).__name__ == "Params4bit"
        for layer in layers
    ):
        log.info("rollout: 4-bit LoRA layers generate unmerged (a merge would round the weights)")
        return []
    if any(layer.get_base_layer().weight.numel() == 0 for layer in layers):
        # ZeRO-3 with ds3_gather_for_generation=false: each rank holds an empty shard.
        log.info("rollout: partitioned (ZeRO-3) weights generate with LoRA unmerged")
        return []
    return layers
