"""vlexp.recipe.perf: FLOP counting as bench/gpu.py counts, and the metrics it adds to a log."""

from __future__ import annotations

import pytest

from tests.helpers import compose
from vlexp.recipe import perf
from vlexp.recipe.estimate import meta_model


@pytest.fixture(scope="module")
def model_7b():
    return meta_model(compose(["model=qwen2_5_vl_7b"]))


def test_text_flops_are_6_per_matmul_weight_per_token_plus_attention(model_7b):
    flops = perf.flop_model(model_7b)
    named = dict(model_7b.named_parameters())
    visual = sum(p.numel() for n, p in named.items() if ".visual." in f".{n}")
    embed = model_7b.get_input_embeddings().weight.numel()
    vectors = sum(p.numel() for n, p in named.items() if "visual" not in n and p.dim() == 1)
    # Every text matmul weight: the decoder projections and the (untied, 7B) LM head; not the
    # embedding lookup, norms or biases.
    assert (
        flops.text_weights
        == sum(p.numel() for p in model_7b.parameters()) - visual - embed - vectors
    )
    assert flops.attention_widths == [3584] * 28
    seq = 1000
    assert flops.train_flops([seq], []) == 6 * flops.text_weights * seq + 12 * 28 * 3584 * seq * seq


def test_vision_flops_count_windowed_and_full_blocks(model_7b):
    flops = perf.flop_model(model_7b)
    # Qwen2.5-VL-7B: 32 blocks, full attention in 4 of them, 112 px windows = 8x8 patches.
    assert flops.vision_attention.count(None) == 4 and set(flops.vision_attention) == {None, 64}
    grid = (1, 64, 64)  # an 896x896 image: 4,096 patches, 1,024 LLM tokens
    image = flops.train_flops([0], [grid]) - flops.train_flops([0], [])
    patches = 4096
    expected = 6 * flops.vision_weights * patches + 6 * flops.merger_weights * patches // 4
    expected += 12 * 1280 * patches * (4 * patches + 28 * 64)
    assert image == expected
    assert flops.vision_weights > 600e6  # the 670M-parameter tower, merger apart


def _trainer(callback: perf.PerfCallback):
    """A trainer class with recipe.perf.PerfMixin in front, as vlexp.recipe.trainers composes
    it: its `log` is where the callback's metrics join the logs."""
    import torch

    class Base:
        def __init__(self) -> None:
            self.model = torch.nn.Linear(1, 1)

        def log(self, logs: dict) -> None:
            pass

    return type("Trainer", (perf.PerfMixin, Base), {"vlexp_perf": callback})()


def test_metrics_divide_the_interval_by_its_steps_and_seconds():
    callback = perf.PerfCallback(cuda=False)
    callback.interval = perf.Interval(steps=2, seconds=4.0, tokens=1000, flops=8e12)
    callback.add_phase("generate", 3.0)
    callback.add_phase("update", 0.5)
    callback.add_phase("update", 0.5)
    logs = {"loss": 1.0}
    trainer = _trainer(callback)
    trainer.log(logs)
    assert logs["perf/tokens_per_second_per_gpu"] == 250.0
    assert logs["timing_s/step"] == 2.0
    assert logs["timing_s/generate"] == 1.5 and logs["timing_s/update"] == 0.5
    assert "perf/mfu" not in logs  # CPU: no peak to divide by
    assert not any(k.startswith("perf/max_memory") for k in logs)
    # A new interval starts: the next log has nothing to report but what it measured.
    after = {"loss": 0.5}
    trainer.log(after)
    assert after == {"loss": 0.5}


def test_mfu_uses_the_peak_of_the_card():
    callback = perf.PerfCallback(cuda=False)
    callback.peak = 1e15
    callback.interval = perf.Interval(steps=1, seconds=2.0, tokens=10, flops=5e14)
    assert callback.metrics()["perf/mfu"] == 0.25


def test_eval_logs_are_left_alone():
    callback = perf.PerfCallback(cuda=False)
    callback.interval = perf.Interval(steps=1, seconds=1.0, tokens=10)
    logs = {"eval_loss": 1.0}
    _trainer(callback).log(logs)
    assert logs == {"eval_loss": 1.0} and callback.interval.tokens == 10


@pytest.mark.parametrize(
    ("name", "tflops"),
    [
        ("NVIDIA H100 80GB HBM3", 989),
        ("NVIDIA H200", 989),
        ("NVIDIA H100 PCIe", 756),
        ("NVIDIA A100-SXM4-80GB", 312),
    ],
)
def test_peak_flops_by_card_name(name, tflops, monkeypatch):
    monkeypatch.delenv("VLEXP_PEAK_TFLOPS", raising=False)
    assert perf.peak_flops(name) == tflops * 1e12


def test_peak_flops_override_and_unknown_card(monkeypatch):
    monkeypatch.delenv("VLEXP_PEAK_TFLOPS", raising=False)
    assert perf.peak_flops("Some Future GPU") is None
    monkeypatch.setenv("VLEXP_PEAK_TFLOPS", "500")
    assert perf.peak_flops("Some Future GPU") == 500e12


# --- the text FLOPs follow the parameters a token passes through -------------------------


def _hand_count(text) -> int:
    """Matmul weights per token, from the text config's numbers alone: attention projections
    (Qwen3.5's full attention gates its output: q_proj is twice as wide; its linear-attention
    layers project q/k/v, z, b, a, out and run a depthwise conv of `linear_conv_kernel_dim`
    taps over q/k/v), then the MLP: dense SwiGLU, or router + top_k routed experts + the
    shared expert and its gate, then the LM head."""
    h, heads, kv_heads = text.hidden_size, text.num_attention_heads, text.num_key_value_heads
    hd = getattr(text, "head_dim", None) or h // heads
    gated = 2 if text.model_type.startswith("qwen3_5") else 1
    full = h * heads * hd * gated + 2 * h * kv_heads * hd + heads * hd * h
    types = getattr(text, "layer_types", None) or ["full_attention"] * text.num_hidden_layers
    total = 0
    for kind in types:
        if kind == "linear_attention":
            keys = text.linear_num_key_heads * text.linear_key_head_dim
            values = text.linear_num_value_heads * text.linear_value_head_dim
            heads_v = text.linear_num_value_heads
            total += h * (2 * keys + values) + h * values + 2 * h * heads_v + values * h
            total += (2 * keys + values) * text.linear_conv_kernel_dim
        else:
            total += full
        experts = getattr(text, "num_experts", None)
        if experts:
            total += h * experts + text.num_experts_per_tok * 3 * h * text.moe_intermediate_size
            shared = getattr(text, "shared_expert_intermediate_size", 0) or 0
            total += 3 * h * shared + (h if shared else 0)
        else:
            total += 3 * h * text.intermediate_size
    return total + text.vocab_size * h


@pytest.mark.parametrize(
    "model", ["qwen2_5_vl_3b", "qwen3_vl_8b", "qwen3_vl_30b_a3b", "qwen3_5_35b_a3b"]
)
def test_text_matmul_weights_equal_a_hand_count_from_the_config(model):
    # Dense and MoE checkpoints as they ship (bundled configs, built on the meta device).
    built = meta_model(compose([f"model={model}"]))
    assert perf.flop_model(built).text_weights == _hand_count(built.config.get_text_config())


def test_qwen3_vl_30b_a3b_counts_its_active_experts():
    # Qwen3-VL-30B-A3B's text model (its config.json): 48 layers, width 2048, 32 query and 4
    # key/value heads of 128, vocabulary 151,936 (untied head); 128 experts of width 768 per
    # layer, 8 routed per token. Counting Linear layers only gave attention + LM head, 1.22B.
    attention = 48 * (2 * 2048 * 32 * 128 + 2 * 2048 * 4 * 128)
    head = 151_936 * 2048
    assert attention + head == 1_217_134_592  # what MFU counted per token before
    routed = 48 * 8 * 3 * 2048 * 768
    router = 48 * 2048 * 128
    text = perf.flop_model(meta_model(compose(["model=qwen3_vl_30b_a3b"]))).text_weights
    assert text == attention + head + routed + router == 3_041_656_832  # the "A3B"


@pytest.fixture(scope="module")
def tiny_configs(vlexp_cache):
    from transformers import AutoConfig

    from vlexp import families
    from vlexp.models import tiny

    return {
        family.name: AutoConfig.from_pretrained(tiny.ensure(family.name))
        for family in families.FAMILIES.values()
        if family.tiny
    }


def _family_names() -> list[str]:
    from vlexp import families

    return [family.name for family in families.FAMILIES.values() if family.tiny]


@pytest.mark.parametrize("family", _family_names())
def test_forward_flops_equal_torchs_flop_counter(family, tiny_configs):
    # torch's FlopCounterMode counts every matmul the model's own forward runs (eager
    # attention and eager experts, so each is an op it knows). One third of `train_flops`
    # (forward + backward = 3 x forward) must equal it. Qwen3.5's Gated DeltaNet recurrence
    # (its chunked delta rule, not a weight) is left out of vlexp's count: it is taken out of
    # torch's count too, module by module.
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoModelForImageTextToText

    config = tiny_configs[family]
    config._attn_implementation = "eager"
    config._experts_implementation = "eager"
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_config(config).eval()
    tokens = 48
    with FlopCounterMode(display=False) as counter:
        model(input_ids=torch.randint(0, 300, (1, tokens)))
    counted = counter.get_total_flops()
    by_module = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    for name, module in model.named_modules():
        if name.endswith("linear_attn"):
            key = f"{type(model).__name__}.{name}"
            own = [f"{key}.{child}" for child, _ in module.named_children()]
            ops = counter.get_flop_counts()[key]
            conv = sum(n for op, n in ops.items() if "convolution" in str(op))  # its weights
            counted -= by_module[key] - conv - sum(by_module.get(child, 0) for child in own)
    expected = perf.flop_model(model).train_flops([tokens], []) / 3
    assert expected == pytest.approx(counted, rel=1e-3)


def test_zero3_partitioned_weights_count_whole():
    # DeepSpeed ZeRO-3 (deepspeed/runtime/zero/partition_parameters.py) records the full
    # shape and size in `ds_shape` / `ds_numel` and leaves each rank an empty `param.data`
    # (`free_param`): the counts must not change.
    import torch

    model = meta_model(compose(["model=qwen3_5_35b_a3b"]))
    whole = perf.flop_model(model)
    for param in model.parameters():
        param.ds_shape, param.ds_numel = param.shape, param.numel()
        param.data = torch.empty(0, dtype=param.dtype, device=param.device)
    assert sum(p.numel() for p in model.parameters()) == 0
    partitioned = perf.flop_model(model)
    assert partitioned.text_weights == whole.text_weights > 0
    assert partitioned.vision_weights == whole.vision_weights > 0
    assert partitioned.merger_weights == whole.merger_weights > 0
