"""rollout=: the generation engines (vlexp.rollout).

hf_fast must sample what plain HF generate samples: on the tiny build of every family, greedy
tokens and their log-probabilities equal the model's own `generate` (the reference), with
prompts repeated as TRL's GRPO repeats them (one generate per unique prompt), prompts padded
to a bucket, a static cache, and LoRA adapters merged; the base weights come back bit for
bit. The vLLM options hand TRL its own arguments and refuse what TRL would refuse later.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import compose
from vlexp import families
from vlexp.rollout import Rollout

TINY = [f.name for f in families.FAMILIES.values() if f.tiny]
HF_FAST = Rollout(
    name="hf_fast", merge_lora=True, static_cache=True, compile=False, buckets=True,
    min_bucket=64, share_images=True,
)  # fmt: skip
NEW_TOKENS = 6


@pytest.fixture(scope="module")
def tiny_models(vlexp_cache):
    from vlexp.models import tiny

    return {name: tiny.ensure(name) for name in TINY}


def _load(path: Path):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    torch.manual_seed(0)
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32).eval()
    return model, processor


def _grpo_batch(processor, repeats: int):
    """Two prompts with images of different sizes, each repeated `repeats` times in a row
    (TRL's RepeatSampler layout), processed as TRL's GRPO processes prompts."""
    from PIL import Image
    from trl.data_utils import prepare_multimodal_messages

    prompts = []
    for size, colour, question in (
        ((56, 56), "red", "Which colour?"),
        ((84, 56), "blue", "How many shapes are there in this picture?"),
    ):
        image = Image.new("RGB", size, colour)
        messages = [{"role": "user", "content": question}]
        prompts += [prepare_multimodal_messages(messages, images=[image])] * repeats
    return processor.apply_chat_template(
        conversation=prompts,
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        processor_kwargs={"padding": True, "padding_side": "left"},
    )


# Greedy decoding, and sampling from the top-1 token only: the same tokens, but the sampling
# path (one generate per unique prompt with num_return_sequences=k) instead of the greedy one.
DECODING = {"greedy": {"do_sample": False}, "top1_sampling": {"do_sample": True, "top_k": 1}}


def _greedy(generate, inputs, model, decoding: str = "greedy"):
    """Token ids and their log-probabilities (log-softmax of the raw logits at each step)."""
    import torch

    with torch.no_grad():
        out = generate(
            **inputs,
            max_new_tokens=NEW_TOKENS,
            output_logits=True,
            return_dict_in_generate=True,
            pad_token_id=model.generation_config.pad_token_id or 0,
            suppress_tokens=families.placeholder_token_ids(model.config),
            **DECODING[decoding],
        )
    logps = model.compute_transition_scores(out.sequences, out.logits, normalize_logits=True)
    return out.sequences, logps


def _assert_same(reference, fast):
    import torch

    (ref_ids, ref_logps), (ids, logps) = reference, fast
    assert ids.shape == ref_ids.shape
    assert torch.equal(ids, ref_ids), "hf_fast's greedy tokens differ from generate's"
    torch.testing.assert_close(logps, ref_logps, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("decoding", DECODING)
@pytest.mark.parametrize("family", TINY)
def test_rollout_hf_fast_greedy_tokens_and_logprobs_equal_generate(family, decoding, tiny_models):
    from vlexp.rollout.fast import FastGenerate

    model, processor = _load(tiny_models[family])
    inputs = _grpo_batch(processor, repeats=3)
    reference = _greedy(model.generate, inputs, model, decoding)
    engine = FastGenerate(model, HF_FAST)
    calls = []
    inner = engine.inner
    engine.inner = lambda *a, **kw: calls.append(tuple(kw["input_ids"].shape)) or inner(*a, **kw)
    _assert_same(reference, _greedy(engine, inputs, model, decoding))
    if inputs["pixel_values"].dim() == 5 or families.FAMILIES[family].packed_images:
        # LLaVA-OneVision's AnyRes tiles (images x tiles x C x H x W, with image_sizes and
        # batch_num_images) and MiniCPM-V's images packed into one row: vlexp.rollout.rows
        # cannot cut them into rows yet, so the call goes through whole (same tokens, no
        # de-duplication).
        assert calls == [tuple(inputs["input_ids"].shape)]
        return
    # One generate per unique prompt (2, padded to 2 rows), prompt padded to a 64-bucket.
    assert calls == [(2, max(64, 1 << (inputs["input_ids"].shape[1] - 1).bit_length()))]


@pytest.mark.parametrize("family", TINY)
def test_rollout_hf_fast_merged_lora_equals_unmerged(family, tiny_models):
    import torch
    from peft import LoraConfig, get_peft_model

    from vlexp.rollout.fast import FastGenerate

    model, processor = _load(tiny_models[family])
    # init_lora_weights=False: random A and B, so the adapter changes the outputs.
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    peft_model = get_peft_model(model, lora).eval()
    inputs = _grpo_batch(processor, repeats=2)
    base = {n: p.detach().clone() for n, p in peft_model.named_parameters() if "lora_" not in n}
    reference = _greedy(peft_model.generate, inputs, model)  # adapters applied unmerged
    merges = []
    peft_model.merge_adapter = _spy(peft_model.merge_adapter, merges)
    _assert_same(reference, _greedy(FastGenerate(peft_model, HF_FAST), inputs, model))
    assert merges, "generation did not merge the adapters"
    for name, param in peft_model.named_parameters():
        if name in base:
            assert torch.equal(param, base[name]), f"{name} changed by merge + unmerge"
    assert not any(getattr(m, "merged", False) for m in peft_model.modules())


def _spy(method, calls: list):
    def call(*args, **kwargs):
        calls.append(1)
        return method(*args, **kwargs)

    return call


def test_rollout_merge_restores_bf16_weights_bit_for_bit(tiny_models):
    # PEFT's unmerge subtracts the delta again: in bf16 that leaves rounding in the frozen
    # weights at every step. vlexp copies them back.
    import torch
    from peft import LoraConfig, get_peft_model

    from vlexp.rollout.fast import FastGenerate

    model, processor = _load(tiny_models["qwen2_5_vl"])
    model = model.to(torch.bfloat16)
    lora = LoraConfig(r=4, lora_alpha=64, target_modules="all-linear", init_lora_weights=False)
    peft_model = get_peft_model(model, lora).eval()
    before = {n: p.detach().clone() for n, p in peft_model.named_parameters()}
    peft_model.merge_adapter()
    peft_model.unmerge_adapter()
    drifted = [n for n, p in peft_model.named_parameters() if not torch.equal(p, before[n])]
    assert drifted, "PEFT's unmerge restored bf16 exactly: the saved copy would be unneeded"
    for name, param in peft_model.named_parameters():
        param.data.copy_(before[name])
    inputs = _grpo_batch(processor, repeats=1)
    with torch.no_grad():
        FastGenerate(peft_model, HF_FAST)(**inputs, max_new_tokens=2, do_sample=False)
    assert all(torch.equal(p, before[n]) for n, p in peft_model.named_parameters())


# --- the compiled decode step: once per bucket ---------------------------------------------
def test_rollout_compiled_decode_equals_generate_and_compiles_once_per_bucket(tiny_models):
    # Dynamo's graph capture (backend eager: no C++ build on CPU) through transformers'
    # static-cache compile path; perf/recompiles counts the graphs.
    from dataclasses import replace

    from vlexp.rollout.fast import FastGenerate

    model, processor = _load(tiny_models["qwen2_5_vl"])
    engine = FastGenerate(model, replace(HF_FAST, compile=True, compile_backend="eager"))
    assert engine.compiled
    inputs = _grpo_batch(processor, repeats=3)
    _assert_same(_greedy(model.generate, inputs, model), _greedy(engine, inputs, model))
    first = engine.recompiles()
    assert first >= 1  # the decode step was compiled
    _greedy(engine, _grpo_batch(processor, repeats=5), model)  # 2 unique prompts again
    assert engine.recompiles() == first  # same buckets: no new graph


def test_rollout_compile_failure_falls_back_to_eager_generation(tiny_models, caplog):
    from dataclasses import replace

    from vlexp.rollout.fast import FastGenerate

    model, processor = _load(tiny_models["qwen2_5_vl"])
    engine = FastGenerate(model, replace(HF_FAST, compile=True, compile_backend="eager"))
    inner = engine.inner

    def fails_compiled(*args, **kwargs):
        config = kwargs.get("generation_config")
        if kwargs.get("compile_config") or getattr(config, "compile_config", None):
            raise RuntimeError("Dynamo failed to run FX node")
        return inner(*args, **kwargs)

    engine.inner = fails_compiled
    inputs = _grpo_batch(processor, repeats=2)
    _assert_same(_greedy(model.generate, inputs, model), _greedy(engine, inputs, model))
    assert not engine.compiled
    assert "generating without torch.compile from now on" in caplog.text


# --- evaluation generates through the engine ------------------------------------------------
@pytest.mark.parametrize(("temperature", "samples"), [(0.0, 1), (1.0, 3)])
def test_rollout_evaluation_generation_through_hf_fast_equals_plain(
    temperature, samples, tiny_models, tmp_path
):
    # vlexp.evaluation.generation.generate calls model.generate; with the engine installed
    # (python -m vlexp.evaluate, the in-training eval callback) the completions are the same:
    # greedy, and pass@k sampling from the top-1 token (num_return_sequences from the caller).
    from PIL import Image

    from vlexp import rollout
    from vlexp.evaluation.generation import generate

    model, processor = _load(tiny_models["qwen2_5_vl"])
    examples = []
    for i, (size, colour) in enumerate((((56, 56), "red"), ((84, 56), "blue"), ((56, 84), "red"))):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", size, colour).save(path)
        prompt = [{"role": "user", "content": f"What is in picture {i}?"}]
        examples.append({"prompt": prompt, "images": [str(path)]})
    kwargs = {"max_new_tokens": 6, "num_samples": samples, "temperature": temperature,
              "top_k": 1, "progress": False}  # fmt: skip
    plain = generate(model, processor, examples, **kwargs)
    # The model loaded as the policy class, as evaluation loads it (vlexp.evaluate.load_weights).
    seam = rollout.seam(compose(["rollout=hf_fast"]))
    policy_cls = rollout.policy_class(type(model), seam)
    policy = policy_cls.from_pretrained(tiny_models["qwen2_5_vl"], dtype=model.dtype)
    fast = generate(policy.eval(), processor, examples, **kwargs)
    assert seam.engine is not None  # the engine ran
    assert [[c.ids for c in cs] for cs in fast] == [[c.ids for c in cs] for cs in plain]
    assert all(len(cs) == samples for cs in fast)


# --- one vision pass per unique image in the log-prob / loss forwards -----------------------
@pytest.mark.parametrize("family", TINY)
def test_rollout_shared_image_features_equal_the_models_forward(family, tiny_models):
    # TRL's log-prob passes forward k copies of each prompt's image; with the images shared,
    # the logits and the gradients equal the model's own forward, and the tower sees each
    # distinct image once.
    import torch

    from vlexp.rollout.images import share_image_features

    model, processor = _load(tiny_models[family])
    inputs = _grpo_batch(processor, repeats=3)
    inputs = {k: v for k, v in inputs.items()}

    def logits_and_grads():
        model.zero_grad()
        out = model(**inputs).logits
        out.float().pow(2).mean().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return out.detach(), grads

    reference, ref_grads = logits_and_grads()
    seen = []
    tower = next((m for m in model.modules() if hasattr(m, "visual")), None)
    if share_image_features(model) == 0:
        assert tower is None or "image_grid_thw" not in inputs  # no per-image grids: untouched
        return
    hook = tower.visual.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    shared, grads = logits_and_grads()
    hook.remove()
    torch.testing.assert_close(shared, reference, atol=1e-5, rtol=1e-5)
    assert grads.keys() == ref_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], atol=1e-5, rtol=1e-4, msg=name)
    patches = inputs["image_grid_thw"].prod(-1).tolist()
    assert seen == [patches[0] + patches[3]]  # the two distinct images, once each
