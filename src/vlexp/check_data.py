"""Check a data set for a run without training: the same overrides, the same check.

    python -m vlexp.check_data data=jsonl data.train=/data/train.jsonl algo=dpo
    python -m vlexp.check_data experiment=shapes_grpo data.check_sample=1000
    python -m vlexp.check_data data=jsonl data.train=/data/mllm_demo.json --show 3

Composes the config exactly as `python -m vlexp ARGS` would, validates it, prepares the data
set, loads the processor (never the model) and checks every record. Prints the summary (with
the format detected per file) and every bad record; `--show N` prints the first N training
records as the trainer gets them (`vlexp.data.show`). Exit status: 0 when the run would start (no bad records, or
data.on_bad_record=skip), 1 when it would stop on bad data, 2 on a config error.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from vlexp import environments, runplan
from vlexp.data import build_datasets
from vlexp.data.check import DataCheck
from vlexp.data.records import DataError
from vlexp.models.loading import load_processor
from vlexp.paths import config_dir
from vlexp.validate import ConfigError, validate

USAGE = __doc__.split("\n\n")[1]


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in args):
        print(f"usage:\n{USAGE}\n{__doc__.split(chr(10) * 2, 2)[2]}")
        return 0
    args, count = _show_count(args)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    checked = start(args)
    if isinstance(checked, int):
        return checked
    cfg, plan = checked
    from vlexp.validate import torch_stack

    mismatch = torch_stack.problem()  # before transformers imports torchvision and fails
    if mismatch:
        print(mismatch, file=sys.stderr)
        return 1
    from vlexp.recipe.console import quiet_libraries

    quiet_libraries()  # no "Casting the dataset" bars between the summary and the records
    processor = load_processor(cfg.model, plan.family)
    refused = plan.env is not None and environments.tools_refusal(processor, plan.family)
    if refused:  # else the prompts carry the tools' schema (env=)
        print(f"vlexp.check_data: config error: {refused}", file=sys.stderr)
        return 1
    check = DataCheck(
        plan.data, processor, tools=environments.tools_of(plan.env, plan.tool_limits())
    )
    check.max_listed = None  # a checking tool lists every bad record
    try:
        # The train batch as the run cuts it: KTO lays its rows out for it (vlexp.data.unpaired).
        batch = cfg.train.per_device_train_batch_size
        train, evaluation = build_datasets(
            plan.data.node, plan.algorithm.kind, check, batch_sizes={"train": batch}
        )
    except DataError as err:
        print(f"vlexp.check_data: {err}", file=sys.stderr)
        return 1
    for split, bad in check.bad:
        print(f"dropped ({split}): {bad}")
    if count:
        print(_records(plan, check, train, count))
    sizes = f"{len(train)} train" + (f" / {len(evaluation)} eval" if evaluation else "")
    print(f"vlexp.check_data: ok, {sizes} records would be used")
    return 0


def _records(plan: runplan.RunPlan, check: DataCheck, train: Any, count: int) -> str:
    """`--show N`: the first N training records as the trainer gets them (with `env=`, turn
    by turn: the prompt with the tools' schema, an example call and the tool's result)."""
    import functools

    from vlexp.config import reward as reward_config
    from vlexp.data.show import Tools, show

    reads = reward_config.columns_of(plan.rewards.funcs, optional=True) if check.needs else {}
    tools = None
    if plan.env is not None:
        env, run_limits = plan.env, plan.tool_limits()
        limits = (
            f"at most env.max_turns={env.max_turns} model turns and "
            f"env.max_tool_calls={env.max_tool_calls} tool calls per rollout"
        )
        example = functools.partial(environments.example_turns, env, run_limits)
        tools = Tools(environments.tools_of(env, run_limits), example, limits)
    kind, budget, family = plan.algorithm.kind, plan.data.video, plan.family
    return show(train, check.processor, kind, count, check.needs, budget, family, reads, tools)


def start(args: list[str]) -> tuple[Any, runplan.RunPlan] | int:
    """The composed config and its run plan (`vlexp.validate`, as `python -m vlexp` starts),
    or the exit code after printing the one-line error."""
    from hydra.errors import HydraException

    from vlexp import overrides

    line = overrides.problem(args)  # the one line `python -m vlexp` prints for them
    if line:
        print(line, file=sys.stderr)
        return 2
    try:
        cfg = compose(args)
        plan = validate(cfg)
    except HydraException as err:
        print(overrides.first_line(err), file=sys.stderr)
        return 2
    except ConfigError as err:
        print(f"vlexp.check_data: config error: {err}", file=sys.stderr)
        return 2
    return cfg, plan


def _show_count(args: list[str]) -> tuple[list[str], int]:
    """(the Hydra overrides, N of `--show N` or 0)."""
    if "--show" not in args:
        return args, 0
    at = args.index("--show")
    try:
        count = int(args[at + 1])
    except (IndexError, ValueError):
        raise SystemExit(
            "vlexp.check_data: --show needs a number of records, e.g. --show 3"
        ) from None
    return args[:at] + args[at + 2 :], count


if __name__ == "__main__":
    sys.exit(main())
