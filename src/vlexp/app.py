"""The Hydra entry point: compose, validate, record the resolved config, then train.

python -m vlexp                                   # the embedded default (GRPO, tiny, shapes)
python -m vlexp algo=grpo reward=[think_format,accuracy] model=qwen2_5_vl_3b
python -m vlexp --cfg job                         # print the composed config, import nothing heavy
"""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from vlexp import overrides, patches
from vlexp.paths import config_dir, private_temp
from vlexp.recipe import launch, redact, stops
from vlexp.recipe.rundir import RunDirError, check_writable
from vlexp.recipe.sweep import JobFailed, objective
from vlexp.runplan import RunPlan
from vlexp.validate import ConfigError, torch_stack, validate

log = logging.getLogger("vlexp")


def save_resolved(cfg: DictConfig, run_dir: Path) -> Path:
    """Resolve once, here: every rank and every later reader sees the same values.

    Secrets (credential env vars, `${oc.env:...}` of them, `*api_key`/`*token` keys) are
    written as `<redacted>`: libraries read credentials from the environment, not from here.
    """
    path = run_dir / "config.resolved.yaml"
    # Write-then-rename: on multi-node every node's parent writes this file, and no rank may
    # read it half written (a pid-named temp file can repeat on another node).
    partial = private_temp(path)
    try:
        partial.write_text(redact.to_yaml(cfg), encoding="utf-8")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def stop(message: str) -> BaseException:
    """SystemExit(message); inside a `-m` sweep an Exception, so that Hydra records this job
    as failed (sweep.jsonl shows the message) and still runs the others."""
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        return JobFailed(message)
    return SystemExit(message)


@hydra.main(config_path=str(config_dir()), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    redact.scrub_argv()  # Hydra has read the overrides; W&B would copy them into its files
    try:
        start(cfg)
    except ConfigError as err:
        raise stop(f"vlexp: config error: {err}") from None
    mismatch = torch_stack.problem()  # before transformers imports torchvision and fails
    if mismatch:
        raise stop(mismatch)
    note = unused_reward_note(cfg, list(HydraConfig.get().overrides.task))
    if note:
        log.info(note)
    from vlexp.models.loading import work_offline_if_unreachable

    if work_offline_if_unreachable(str(cfg.model.name_or_path)):
        log.info("the hub is unreachable: %s loads from the local cache", cfg.model.name_or_path)
    try:
        check_writable(run_dir)
    except RunDirError as err:
        raise stop(f"vlexp: {err}") from None
    from vlexp.recipe.tracking import name_run

    name_run(cfg)
    resolved = save_resolved(cfg, run_dir)
    log.info("run dir: %s", run_dir)

    if launch.wanted(cfg):  # several ranks, all on the resolved file (vlexp.recipe.launch)
        try:
            launch.launch(cfg, resolved)
        except launch.RanksFailed as err:
            raise stop(str(err)) from None
    else:
        from vlexp.recipe.run import train

        try:
            train(cfg, run_dir)
        except Exception as err:
            line = stops.message(err)
            if line is None:
                raise
            raise stop(line) from None
    from vlexp.recipe import summary

    answer = summary.read(run_dir)  # rank 0 wrote it, in this process or a launched one
    print(summary.render(answer) if answer else f"vlexp: done. run dir: {run_dir}")
    # The sweep objective (Optuna maximises it): mean of the last few logged rewards.
    return objective(run_dir, **cfg.get("objective", {}))


def start(cfg: DictConfig) -> RunPlan:
    """The run plan (`vlexp.runplan`) of a training run, checked: `rollout=auto` recorded as
    what it picks here (hf_fast on CUDA, hf on CPU), then every check (`vlexp.validate`)."""
    from vlexp import rollout

    rollout.resolve_auto(cfg)
    return validate(cfg)


def unused_reward_note(cfg: DictConfig, overrides: list[str]) -> str | None:
    """One line when `reward=` is given to an algorithm that does not generate (SFT, DPO):
    its trainer never calls reward functions, only evaluation scores with them."""
    from vlexp.config import algo

    given = [o for o in overrides if re.match(r"[+~]*reward(=|\.funcs)", o)]
    if not given or algo.of(cfg).generates:
        return None
    return (
        f"{given[0]}: algo={cfg.algo.name} does not generate while training, so the reward "
        "serves evaluation only (train.eval_steps, python -m vlexp.evaluate)"
    )


def cli() -> None:
    """`python -m vlexp`: the overrides checked first (one line for a mistake, with "did you
    mean"; Hydra's own answer is several lines and accepts `train.max_steps=abc`), then Hydra's
    main."""
    checked = overrides.check(sys.argv[1:])
    if checked.line:
        raise SystemExit(checked.line)
    with patches.hydra_mode_known(checked):  # Hydra need not compose a third time
        main()


if __name__ == "__main__":
    cli()
