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


def test_metrics_divide_the_interval_by_its_steps_and_seconds():
    callback = perf.PerfCallback(cuda=False)
    callback.interval = perf.Interval(steps=2, seconds=4.0, tokens=1000, flops=8e12)
    callback.add_phase("generate", 3.0)
    callback.add_phase("update", 0.5)
    callback.add_phase("update", 0.5)
    logs = {"loss": 1.0}
    callback.on_log(None, None, None, logs=logs)
    assert logs["perf/tokens_per_second_per_gpu"] == 250.0
    assert logs["timing_s/step"] == 2.0
    assert logs["timing_s/generate"] == 1.5 and logs["timing_s/update"] == 0.5
    assert "perf/mfu" not in logs  # CPU: no peak to divide by
    assert not any(k.startswith("perf/max_memory") for k in logs)
    # A new interval starts: the next log has nothing to report but what it measured.
    after = {"loss": 0.5}
    callback.on_log(None, None, None, logs=after)
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
    callback.on_log(None, None, None, logs=logs)
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
