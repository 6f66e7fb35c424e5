"""Evaluate a trained run, a checkpoint or a base model: accuracy, rewards, a sample gallery.

python -m vlexp.evaluate run=outputs/2026-11-22/00-10-00           # -> RUN/eval/metrics.json
python -m vlexp.evaluate run=outputs/.../checkpoint-100 eval=pass_at_k
python -m vlexp.evaluate model=tiny data=shapes                    # baseline: untrained model
python -m vlexp.evaluate run=outputs/... bench=[mathvista_testmini,mmmu_val]  # -> RUN/eval/bench/

Writes metrics.json, samples.jsonl, samples.html and the config.resolved.yaml it ran into
the eval dir, and prints where.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from vlexp import environments, patches, rollout, runplan
from vlexp.data import DataError
from vlexp.evaluation import bench
from vlexp.evaluation.core import check, decoding, evaluate, write_outputs
from vlexp.evaluation.gallery import wandb_table
from vlexp.evaluation.generation import load_examples
from vlexp.models.loading import load_model, load_processor, source_problem
from vlexp.paths import config_dir
from vlexp.validate import torch_stack

log = logging.getLogger("vlexp")

RESOLVED = "config.resolved.yaml"
# Nodes a run fixes but the command line may replace (group) or adjust (key).
REPLACEABLE = ("data", "reward", "eval", "logger", "bench")


class EvalError(ValueError):
    """A command that cannot run; the message names the argument and the fix."""


def locate(run: str) -> tuple[Path, Path]:
    """(run dir, model dir) for a run dir or one of its checkpoint-N/ or final/ folders."""
    path = Path(run).expanduser()
    if (path / RESOLVED).is_file():
        return path, path / "final"
    has_model = any((path / name).is_file() for name in ("config.json", "adapter_config.json"))
    if (path.parent / RESOLVED).is_file() and has_model:
        return path.parent, path
    if (path.parent / RESOLVED).is_file():  # a run dir's folder that is not there (yet)
        there = sorted(
            (
                p.name
                for p in path.parent.iterdir()
                if p.name == "final" or p.name.startswith("checkpoint-")
            ),
            key=lambda name: (name == "final", int(name.split("-")[-1]) if "-" in name else 0),
        )
        raise EvalError(
            f"run={run}: no {path.name}/ with a model in {path.parent}; it has: "
            f"{', '.join(there) or 'no checkpoint-N/ or final/ yet'} "
            "(checkpoints are saved every train.save_steps steps)"
        )
    raise EvalError(
        f"run={run}: not a vlexp run dir (no {RESOLVED} in it or its parent, or no model in "
        "it): give a run dir such as outputs/DATE/TIME, or its checkpoint-N/ or final/ folder"
    )


def eval_dir(run: str | None) -> str:
    """Where an evaluation writes: RUN/eval, RUN/eval/checkpoint-N, or a new outputs/ dir."""
    if run is None:
        return f"outputs/{datetime.now():%Y-%m-%d/%H-%M-%S}/eval"
    run_dir, model_dir = locate(run)
    if model_dir == run_dir / "final":
        return str(run_dir / "eval")
    return str(run_dir / "eval" / model_dir.name)


OmegaConf.register_new_resolver("vlexp_eval_dir", eval_dir, replace=True)


def plan(cfg: DictConfig, overrides: list[str]) -> tuple[DictConfig, Path | None, Path | None]:
    """The config to evaluate with, the model dir (None: base model) and the run dir."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if cfg.get("run") is None:
        return cfg, None, None
    run_dir, model_dir = locate(cfg.run)
    if not model_dir.is_dir():
        raise EvalError(f"{model_dir}: missing; did the run finish? Evaluate a checkpoint-N/")
    merged = OmegaConf.load(run_dir / RESOLVED)
    parsed = OverridesParser.create().parse_overrides(overrides)
    keys = [o.key_or_group for o in parsed if o.key_or_group != "run"]
    if "model" in keys:
        raise EvalError("model=... with run=...: the run decides the model; drop one of them")
    for node in REPLACEABLE:
        if node in keys or node not in merged:  # a named group, or a run from before `eval`
            merged[node] = OmegaConf.to_container(cfg[node], resolve=True)
    for key in keys:
        if "." in key and key.split(".")[0] in (*REPLACEABLE, "model"):
            OmegaConf.update(merged, key, OmegaConf.select(cfg, key), merge=False)
    return merged, model_dir, run_dir


def start(
    cfg: DictConfig, overrides: list[str]
) -> tuple[DictConfig, runplan.RunPlan, Path | None, Path | None]:
    """The config to evaluate with (`plan`), its run plan (`vlexp.runplan`: the family
    resolved once, from the run's base model: an adapter dir has no config.json of its own;
    a run dir of this vlexp already records it in model.family), the model dir and the run
    dir."""
    cfg, model_dir, run_dir = plan(cfg, overrides)
    return cfg, runplan.of(cfg), model_dir, run_dir


def trained_step(run_dir: Path, model_dir: Path) -> int | None:
    """The training step the evaluated weights come from, when the run recorded it."""
    state = model_dir / "trainer_state.json"
    if state.is_file():
        return json.loads(state.read_text())["global_step"]
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file() and (lines := metrics.read_text().splitlines()):
        return json.loads(lines[-1]).get("step")
    return None


def local_model_cfg(cfg: DictConfig, model_dir: Path | None) -> DictConfig:
    """The model config pointing at the evaluated weights (the run's pixel limits kept)."""
    if model_dir is None:
        return cfg.model
    return OmegaConf.merge(cfg.model, {"name_or_path": str(model_dir)})


def load_weights(cfg: DictConfig, model_dir: Path | None):
    """The model: full weights, or the run's base model plus the LoRA adapter in model_dir."""
    import torch

    memory = cfg.get("memory") or {}
    # Evaluation generates through the run's rollout engine (the policy class's generate).
    seam = rollout.seam(cfg)
    compose = None if seam is None else functools.partial(rollout.policy_class, seam=seam)
    if model_dir is not None and (model_dir / "adapter_config.json").is_file():
        from peft import PeftModel

        base = load_model(cfg.model, memory, compose)
        model = PeftModel.from_pretrained(base, str(model_dir))
    else:
        model = load_model(local_model_cfg(cfg, model_dir), memory, compose)
    rollout.share_images(model, cfg)
    if torch.cuda.is_available() and not getattr(model, "is_quantized", False):
        model = model.to("cuda")
    return model.eval()


def log_wandb(cfg: DictConfig, out_dir: Path, record: dict, samples: list[dict]) -> None:
    """With logger=wandb: an `eval` job run holding the metrics and the sample table."""
    import wandb

    from vlexp.recipe import tracking

    tracking.configure(cfg.logger, out_dir)
    name = f"eval-{Path(record['run']).name}" if record.get("run") else "eval-base"
    with wandb.init(project=cfg.logger.project, job_type="eval", name=name, config=record) as run:
        numbers = {f"eval/{k}": v for k, v in record.items() if isinstance(v, int | float)}
        table = {"eval/samples": wandb_table(samples, cfg.eval.gallery)} if samples else {}
        run.log({**numbers, **table})


def run_benchmarks(
    cfg: DictConfig, processor, model_dir: Path | None, run_dir: Path | None, out_dir: Path
) -> float | None:
    """bench=[...]: lmms-eval on the loaded model -> OUT/bench/ (lmms-eval's own files and
    summary.json), the scores in the run's summary.json and, with logger=wandb, in W&B."""
    (out_dir / RESOLVED).write_text(OmegaConf.to_yaml(cfg, resolve=True), encoding="utf-8")
    model = load_weights(cfg, model_dir)
    log.info(
        "benchmarks %s on %s",
        ", ".join(bench.chosen(cfg.bench)),
        model_dir or cfg.model.name_or_path,
    )
    report = bench.run(model, processor, cfg.bench, cfg.model, out_dir / "bench")
    meta = {
        "model": str(model_dir or cfg.model.name_or_path),
        "run": str(run_dir) if run_dir else None,
        "step": trained_step(run_dir, model_dir) if run_dir else 0,
        "overrides": list(HydraConfig.get().overrides.task),
    }
    bench.write_summary(out_dir / "bench", meta, report)
    if run_dir is not None and model_dir == run_dir / "final":
        bench.into_run_summary(run_dir, report)
    if "wandb" in (cfg.logger.get("report_to") or []):
        log_wandb(cfg, out_dir, {**meta, **bench.scores(report)}, [])
    shown = ", ".join(
        f"{name} {line['metric']} {'-' if line['score'] is None else format(line['score'], '.4g')}"
        for name, line in report.items()
    )
    print(f"vlexp.evaluate: {shown} -> {out_dir / 'bench'}")
    return next(iter(report.values()))["score"]


@hydra.main(config_path=str(config_dir()), config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> float | None:

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        cfg, run_plan, model_dir, run_dir = start(cfg, list(HydraConfig.get().overrides.task))
        check(cfg.eval)
        # lmms-eval installed, data cached when offline: before any loading
        bench.check(cfg.get("bench"), run_plan.family)
        problem = source_problem(str(local_model_cfg(cfg, model_dir).name_or_path))
        if problem:  # in seconds, not after minutes of hub retries
            raise EvalError(problem)
        mismatch = torch_stack.problem()  # before transformers imports torchvision and fails
        if mismatch:
            raise SystemExit(mismatch)
        from vlexp.recipe.console import quiet_libraries  # imports transformers: after the check

        quiet_libraries()  # the known-harmless warnings and loading bars, as in training
        # The processor (the run's own, saved with its weights) is needed to check records.
        processor = load_processor(local_model_cfg(cfg, model_dir), run_plan.family)
        if run_plan.env is not None:  # rollouts with tools: the template must render them
            environments.speak_tools(processor, run_plan.family)
        if bench.chosen(cfg.get("bench")):  # benchmarks instead of data.eval: lmms-eval's tasks
            bench.check_tasks(cfg.bench)
        else:
            limit = cfg.eval.get("limit")
            examples = load_examples(run_plan.data, cfg.eval.max_new_tokens, processor, limit)
    except (EvalError, DataError, ValueError) as err:  # UnknownFamily is a ValueError
        raise SystemExit(f"vlexp.evaluate: {err}") from None
    if bench.chosen(cfg.get("bench")):
        return run_benchmarks(cfg, processor, model_dir, run_dir, out_dir)
    rollout.resolve_auto(cfg)  # the run's engine (hf_fast, hf), or auto's choice here
    (out_dir / RESOLVED).write_text(OmegaConf.to_yaml(cfg, resolve=True), encoding="utf-8")
    model = load_weights(cfg, model_dir)
    log.info("evaluating %s on %d records of %s", model_dir or cfg.model.name_or_path,
             len(examples), cfg.data.eval)  # fmt: skip
    metrics, samples = evaluate(
        model, processor, examples, cfg.eval, cfg.get("reward"), data_cfg=cfg.data,
        agent=agent_of(run_plan),
    )  # fmt: skip
    meta = {
        "model": str(model_dir or cfg.model.name_or_path),
        "run": str(run_dir) if run_dir else None,
        "step": trained_step(run_dir, model_dir) if run_dir else 0,
        "data": str(cfg.data.eval),
        "decoding": decoding(cfg.eval),
        "overrides": list(HydraConfig.get().overrides.task),
    }
    write_outputs(out_dir, metrics, samples, meta, cfg.eval.gallery)
    if "wandb" in (cfg.logger.get("report_to") or []):
        log_wandb(cfg, out_dir, {**metrics, **meta}, samples)
    names = ("accuracy", "exact_match", "reward", "format_rate")
    headline = [k for k in names if metrics.get(k) is not None]
    shown = ", ".join(f"{k} {metrics[k]:.3f}" for k in headline)
    print(f"vlexp.evaluate: {shown} over {metrics['num_prompts']} prompts -> {out_dir}")
    return metrics.get("accuracy")


def agent_of(run_plan: runplan.RunPlan) -> Any:
    """The run's environment (env=, from its config): the samples are rollouts with its tools
    (`main` made the processor render and parse tool calls, as in training). None without one."""
    from vlexp.evaluation.tools import Agent

    return Agent.of(run_plan.env, run_plan.tool_limits())


def cli() -> None:
    """Check `run=` before Hydra: it decides the output dir, so Hydra would report a bad
    path as an interpolation error with a traceback, after creating directories. A bad
    override stops with the one line `python -m vlexp` prints (vlexp.overrides)."""
    for arg in sys.argv[1:]:
        if arg.startswith("run=") and arg[4:] not in ("", "null"):
            try:
                locate(arg[4:])
            except EvalError as err:
                raise SystemExit(f"vlexp.evaluate: {err}") from None
    from vlexp import overrides

    checked = overrides.check(sys.argv[1:], "evaluate", "python -m vlexp.evaluate")
    if checked.line:
        raise SystemExit(checked.line)
    with patches.hydra_mode_known(checked):  # Hydra need not compose a third time
        main()


if __name__ == "__main__":
    from vlexp.light_exit import light_exit

    light_exit(cli)
