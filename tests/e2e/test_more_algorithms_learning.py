"""New algorithm families learn on `shapes` with the tiny model, through `python -m vlexp`:
KTO widens the desirable-vs-undesirable margin, and distillation brings a fresh student's
divergence to a trained teacher down."""

from __future__ import annotations

import pytest

from tests.e2e.test_more_algorithms import run


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


@pytest.mark.slow
def test_kto_widens_the_margin_between_desirable_and_undesirable(tmp_path, tiny_model):
    _, rows, _ = run(tmp_path, "algo=kto", "train.max_steps=60", timeout=3600)
    margins = [row["rewards/margins"] for row in rows]
    first, last = mean(margins[:10]), mean(margins[-10:])
    print(f"kto rewards/margins: first 10 steps {first:.3f}, last 10 {last:.3f}")
    assert last > first + 0.2 and last > 0, (first, last)


@pytest.mark.slow
def test_distillation_brings_a_fresh_student_to_a_trained_teacher(tmp_path, tiny_model):
    from tests.helpers import run_cli

    teacher = tmp_path / "teacher"
    result = run_cli(
        "algo=sft",
        "train.max_steps=40",
        "train.save_steps=1000",
        f"hydra.run.dir={teacher}",
        timeout=3600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    held, rows, _ = run(
        tmp_path,
        "algo=distill",
        f"teacher.name_or_path={teacher}",
        "train.max_steps=30",
        timeout=3600,
    )
    assert held["teacher"] == str(teacher / "final")
    divergence = [row["loss"] for row in rows]  # reverse KL(student || teacher) per token
    first, last = mean(divergence[:5]), mean(divergence[-5:])
    print(f"distill reverse KL to the teacher: first 5 steps {first:.4f}, last 5 {last:.4f}")
    assert first > 0.01 and last < 0.5 * first, (first, last)
