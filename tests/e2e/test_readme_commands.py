"""README.md's commands run for real, as written, on the tiny model (tests/readme.py lists
them: placeholders swapped for sample files or earlier run dirs, a couple of steps appended).
Commands that build on another's output run as one chain, in README order."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import peer_data, readme
from tests.helpers import REPO, read_metrics
from tests.readme import REGISTRY, Elsewhere, Run

pytestmark = pytest.mark.slow


def _data(root: Path, shapes_dir: Path) -> Path:
    """Sample files for the README's placeholder paths: shapes and the peer formats."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "shapes").symlink_to(shapes_dir)  # train.jsonl, eval.jsonl, images/
    _dpo_en_demo(peer_data.llamafactory(root / "llamafactory").parent)
    peer_data.swift(root / "swift")
    peer_data.qwen_vl(root / "qwen_vl")
    rec = peer_data.vlm_r1(root / "vlm_r1")  # REC rows only: `iou` needs a gold box
    rows = [json.loads(line) for line in rec.read_text().splitlines()]
    peer_data.write_jsonl(rec, [r for r in rows if r["conversations"][-1]["value"][0] == "["])
    peer_data.r1v_eval(root / "r1v")
    peer_data.easyr1(root / "easyr1")
    peer_data.trl_llava(root / "trl_llava")
    _parquet(root / "train.parquet", root / "shapes" / "train.jsonl")
    return root


def _dpo_en_demo(root: Path) -> None:
    """LLaMA-Factory's `dpo_en_demo` (text-only sharegpt pairs), beside its other data sets."""
    peer_data.write_json(
        root / "dpo_en_demo.json",
        [
            {
                "conversations": [{"from": "human", "value": f"What is {n} + {n}?"}],
                "chosen": {"from": "gpt", "value": f"It is {2 * n}."},
                "rejected": {"from": "gpt", "value": f"It is {2 * n + 1}."},
            }
            for n in range(4)
        ],
    )
    info = json.loads((root / "dataset_info.json").read_text())
    info["dpo_en_demo"] = {
        "file_name": "dpo_en_demo.json",
        "ranking": True,
        "formatting": "sharegpt",
        "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"},
    }
    (root / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n")


def _parquet(path: Path, records: Path) -> None:
    """The README's parquet example: columns question, answer, img (renamed on the way in)."""
    import datasets

    rows = [json.loads(line) for line in records.read_text().splitlines()[:16]]
    table = {
        "question": [r["prefix"] for r in rows],
        "answer": [r["suffix"] for r in rows],
        "img": [str(records.parent / r["image"]) for r in rows],
    }
    datasets.Dataset.from_dict(table).to_parquet(str(path))


@pytest.fixture(scope="module")
def data(tmp_path_factory, shapes_dir) -> Path:
    return _data(tmp_path_factory.mktemp("readme-data"), shapes_dir)


def run(text: str, tmp: Path, data: Path, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run one registry command: placeholders filled, cheap overrides (for an Elsewhere
    command: its `tiny` ones) and the output dir appended; asserts it succeeded."""
    how = REGISTRY[text]
    places = {"tmp": str(tmp), "data": str(data), "repo": str(REPO)}
    line = readme.fill(text, how.files, places)
    env = dict(os.environ)
    if line.startswith("PYTHONPATH=."):  # the README's own reward: `.` is where it lies
        line = line.removeprefix("PYTHONPATH=. ")
        env["PYTHONPATH"] = os.pathsep.join([str(cwd), env.get("PYTHONPATH", "")])
    line = line.replace("$PWD", str(cwd))
    module, args = readme.module_and_args(line)
    if isinstance(how, Elsewhere):
        args = [*args, *readme.STEPS, *(a.format(**places) for a in how.tiny)]
    else:
        args = [*args, *how.cheap]
    if module == "vlexp" and not any(a.startswith("hydra.run.dir=") for a in args):
        where = tmp / (getattr(how, "out", "") or _slug(text))
        args.append(f"hydra.sweep.dir={where}" if "-m" in args else f"hydra.run.dir={where}")
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, (line, result.stdout[-2000:], result.stderr[-4000:])
    return result


def assert_excerpt(shown: str, printed: str) -> None:
    """Every line of `shown` is in `printed`, in the same order; within a line, `...` stands
    for text the page leaves out (its parts must still appear, in order). Whitespace runs
    count as one space: an excerpt may join lines."""
    flat, at = " ".join(printed.split()), 0
    for line in _lines(shown):
        for part in (" ".join(p.split()) for p in line.split("...")):
            if part:
                found = flat.find(part, at)
                assert found >= 0, f"the page shows {part!r}, not printed after:\n{flat[at:]}"
                at = found + len(part)


def _lines(text: str) -> list[str]:
    """The lines, blank ones inside included (the chat text's final newline is one), without
    the blank lines that end the block."""
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text[16:80]).strip("-") or "run"


def trained(run_dir: Path, steps: int) -> dict:
    """A finished training run: its summary says how many steps, its final/ holds a model."""
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == steps, summary
    assert any((run_dir / "final" / f).is_file() for f in ("config.json", "adapter_config.json"))
    return summary


STANDALONE = [t for t, h in REGISTRY.items() if isinstance(h, Run) and not h.chain]


@pytest.mark.parametrize("text", STANDALONE, ids=lambda text: text[10:90])
def test_readme_command_runs(text, tmp_path, data, tiny_model):
    result = run(text, tmp_path, data)
    module, args = readme.module_and_args(text)
    how = REGISTRY[text]
    if module == "vlexp.check_data":
        assert "vlexp.check_data: ok," in result.stdout
        assert "Casting the dataset" not in result.stdout + result.stderr
        if "--show" in args:  # what its page shows it prints
            shown = readme.output_after(text)
            printed = result.stdout.split("--- record 1 ---")[0]
            printed = printed[printed.index("--- record 0 ---") :]
            if shown.startswith("--- record 0 ---"):  # a whole record: line for line
                assert _lines(printed) == _lines(shown), printed
            else:  # an excerpt: each line in order, `...` standing for what it leaves out
                assert_excerpt(shown, printed)
    elif "-m" in args:
        jobs = [json.loads(line) for line in (tmp_path / _slug(text) / "sweep.jsonl").open()]
        assert len(jobs) >= 2 and all(job["status"] == "completed" for job in jobs), jobs
        # It ends with the table of its jobs (and Optuna's best trial), without plugin noise.
        assert f"vlexp: sweep of {len(jobs)} jobs done: " in result.stdout
        assert ("best trial (Optuna)" in result.stdout) == ("optuna" in text)
        assert "setup plugin" not in result.stdout + result.stderr
    else:
        steps = int(next(a for a in reversed(how.cheap) if "max_steps" in a).split("=")[1])
        summary = trained(tmp_path / (how.out or _slug(text)), steps)
        assert "vlexp: done. run dir:" in result.stdout, summary


ON_TINY = [t for t, h in REGISTRY.items() if isinstance(h, Elsewhere) and h.tiny]


@pytest.mark.parametrize("text", ON_TINY, ids=lambda text: text[10:90])
def test_readme_command_runs_on_the_tiny_model(text, tmp_path, data, tiny_model):
    """A command that needs the hub here runs with the tiny model (and sample data) in place
    of what it would download: the rest of its preset is exercised."""
    result = run(text, tmp_path, data)
    where = tmp_path / _slug(text)
    if "-m" in readme.module_and_args(text)[1]:
        jobs = [json.loads(line) for line in (where / "sweep.jsonl").open()]
        assert [job["status"] for job in jobs] == ["completed"] * len(jobs), jobs
        assert len(jobs) >= 2, jobs
    else:
        summary = trained(where, 2)
        assert summary["model"].startswith("tiny://"), summary
        assert "vlexp: done. run dir:" in result.stdout


def chain(name: str) -> list[str]:
    return [t for t, h in REGISTRY.items() if isinstance(h, Run) and h.chain == name]


def sft_run(run_dir: Path) -> None:
    """A 2-step SFT run of the tiny model into `run_dir` (what the chains start from)."""
    sft = subprocess.run(
        [sys.executable, "-m", "vlexp", "algo=sft", "train.max_steps=2",
         f"hydra.run.dir={run_dir}"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert sft.returncode == 0, sft.stderr[-3000:]


def test_readme_chain_quickstart(tmp_path, data, tiny_model):
    """The quick start's second command: `vlexp.evaluate` of the run dir the default run (its
    first, here 2 steps) printed."""
    (text,) = chain("quickstart")
    default = subprocess.run(
        [sys.executable, "-m", "vlexp", *readme.STEPS, f"hydra.run.dir={tmp_path / 'quick'}"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert default.returncode == 0, default.stderr[-3000:]
    assert "python -m vlexp.evaluate run=" in default.stdout  # the next command it names
    run(text, tmp_path, data)
    metrics = json.loads((tmp_path / "quick" / "eval" / "metrics.json").read_text())
    assert metrics, metrics


def test_readme_chain_teacher(tmp_path, data, tiny_model):
    """`algo=distill teacher.name_or_path=outputs/DATE/TIME`: a run dir is a teacher."""
    (text,) = chain("teacher")
    sft_run(tmp_path / "sft")
    run(text, tmp_path, data)
    trained(tmp_path / _slug(text), 2)


def test_readme_chain_ppo(tmp_path, data, tiny_model):
    """A reward model (README: 200 steps; here 2), then PPO with it as reward and critic on
    an SFT run's final/ with LoRA."""
    reward_model, ppo = chain("ppo")
    run(reward_model, tmp_path, data)
    trained(tmp_path / "rm", 2)
    sft_run(tmp_path / "sft")
    run(ppo, tmp_path, data)
    trained(tmp_path / _slug(ppo), 2)
    rows = [json.loads(line) for line in (tmp_path / _slug(ppo) / "metrics.jsonl").open()]
    assert any("rewards/reward_model/mean" in row for row in rows), rows[0]


def test_readme_chain_own_reward(tmp_path, data, tiny_model):
    """ "Your own reward": the README's my_rewards.py and YAML, its command, from that folder."""
    (text,) = chain("own_reward")
    readme.own_reward_files(tmp_path)
    run(text, tmp_path, data, cwd=tmp_path)
    run_dir = tmp_path / _slug(text)
    trained(run_dir, 2)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    assert all("rewards/short_answer/mean" in row for row in rows[:-1]), rows[0]


def test_readme_chain_sweep(tmp_path, data, tiny_model):
    """The README's sweep, then `vlexp.compare` of the sweep dir and of two of its runs."""
    sweep, of_sweep, of_two = chain("sweep")
    result = run(sweep, tmp_path, data)
    jobs = [json.loads(line) for line in (tmp_path / "multirun" / "sweep.jsonl").open()]
    assert [job["status"] for job in jobs] == ["completed"] * 4, jobs
    assert "sweep.jsonl" in result.stdout
    result = run(of_sweep, tmp_path, data)
    assert (tmp_path / "multirun" / "compare.png").is_file()
    assert len((tmp_path / "multirun" / "compare.csv").read_text().splitlines()) == 1 + 4
    run(of_two, tmp_path, data)
    assert len((tmp_path / "cmp" / "compare.csv").read_text().splitlines()) == 1 + 2


def test_readme_chain_resume(tmp_path, data, tiny_model):
    """Run into outputs/exp1, continue it with resume=auto, then from a given checkpoint."""
    first, auto, given = chain("resume")
    run(first, tmp_path, data)
    trained(tmp_path / "exp1", 2)
    run(auto, tmp_path, data)
    trained(tmp_path / "exp1", 3)
    steps = [row["step"] for row in read_metrics(tmp_path / "exp1")]
    assert steps == [1, 2, 3], steps  # resumed after step 2, not retrained from 0
    run(given, tmp_path, data)
    trained(tmp_path / "exp2", 3)


def test_readme_evaluate_then_compare_with_the_base_model(tmp_path, data, tiny_model):
    """Comparing runs: a base-model eval dir (`hydra.run.dir=base/eval`, as the README writes
    it) and an evaluated run, side by side: `python -m vlexp.compare base RUN`."""
    text = "python -m vlexp.compare base outputs/2026-11-22/10-00-00"
    assert text in REGISTRY
    limit = "eval.limit=8"
    base = subprocess.run(
        [sys.executable, "-m", "vlexp.evaluate", "model=tiny", "data=shapes", limit,
         "hydra.run.dir=base/eval"],
        cwd=tmp_path, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert base.returncode == 0, base.stderr[-3000:]
    run_dir = tmp_path / "outputs" / "2026-11-22" / "10-00-00"
    for args in (["algo=sft", "train.max_steps=2", f"hydra.run.dir={run_dir}"],):
        done = subprocess.run([sys.executable, "-m", "vlexp", *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=900)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
    done = subprocess.run(
        [sys.executable, "-m", "vlexp.evaluate", f"run={run_dir}", limit],
        cwd=tmp_path, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = subprocess.run(
        [sys.executable, "-m", *text.split()[2:]],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    table = (tmp_path / "compare.csv").read_text().splitlines()
    assert len(table) == 3 and "eval accuracy" in table[0], table
