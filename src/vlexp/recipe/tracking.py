"""Where metrics go: metrics.jsonl in the run dir always, plus the configured logger.

W&B is driven through transformers' own WandbCallback: vlexp only sets the environment it
reads (project, name, group, tags, run id, mode, directory) and adds the Hydra config. The
names are decided once, in the Hydra process (`name_run`), and travel in the resolved
config, so every rank and a resumed run agree on them.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import secrets
import sys
import threading
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict
from transformers import TrainerCallback

from vlexp.recipe import numbers, redact

WANDB_ID_FILE = "wandb-run-id"
_NAME_MAX = 120


def name_run(cfg: DictConfig) -> None:
    """Fill `logger.run_name` and `logger.group` (when null) from Hydra's view of the run.

    Name: the algorithm plus the command-line overrides (`grpo-beta=0.04-reward=think_format`).
    Group: the sweep (every job of one `-m` run shares it), else the experiment.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if "group" not in cfg.logger or not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    with open_dict(cfg.logger):
        if not cfg.logger.get("run_name"):
            # resolve=False: iterating the ListConfig would resolve `${oc.env:...}` in overrides.
            overrides = OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False)
            cfg.logger.run_name = run_name(cfg.algo.name, overrides)
        if not cfg.logger.get("group"):
            if hydra_cfg.mode == RunMode.MULTIRUN:
                stamp = "_".join(Path(hydra_cfg.sweep.dir).parts[-2:])
                cfg.logger.group = f"sweep-{stamp}"
            else:
                experiment = hydra_cfg.runtime.choices.get("experiment")
                cfg.logger.group = experiment or f"{cfg.algo.name}-{cfg.data.name}"


def run_name(algo: str, overrides: list[str]) -> str:
    """`grpo` + overrides with their keys shortened to the last part: `grpo-beta=0.04-lr=...`."""
    parts = [algo]
    for override in overrides:
        path, _, value = override.partition("=")
        path = path.lstrip("+~")
        key = path.split(".")[-1]
        # Where it logs or resumes from does not tell runs apart; secrets never go in a name.
        if path in ("algo", "logger", "resume") or path.startswith(("logger.", "hydra.")):
            continue
        if redact.is_secret_key(key) or "${" in value:
            continue
        value = value.strip("[]").replace(" ", "")
        value = re.sub(r"[^\w.,=+:-]", "_", value.split("/")[-1] if "/" in value else value)
        parts.append(f"{key}={value}" if value else key)
    return "-".join(parts)[:_NAME_MAX]


def wandb_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved, redacted config flattened to dotted keys (`algo.args.beta`), plus the
    chosen `algo`, `model`, `data` and `reward` names as plain keys to group by."""
    flat = flatten(redact.redacted_container(cfg))
    funcs = (cfg.get("reward") or {}).get("funcs") or {}
    flat["algo"] = cfg.algo.name
    flat["model"] = cfg.model.name
    flat["data"] = cfg.data.name
    flat["reward"] = "+".join(funcs) if funcs else "none"
    return flat


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists of plain values stay lists."""
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    if isinstance(tree, list) and any(isinstance(item, dict | list) for item in tree):
        out = {}
        for index, item in enumerate(tree):
            out.update(flatten(item, f"{prefix}{index}."))
        return out
    return {prefix.rstrip("."): tree}


def configure(logger_cfg: Any, run_dir: Path) -> list[str]:
    """Set the logger's environment for this run; return TRL's `report_to` list."""
    report_to = list(logger_cfg.get("report_to") or [])
    # transformers' WandbCallback reuses an open `wandb.run`: without this, every job of a
    # `-m` sweep after the first would log into the first job's run.
    finish_wandb_run()
    if "wandb" in report_to:
        _configure_wandb(logger_cfg, run_dir)
    if "tensorboard" in report_to:
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(run_dir / "tb")
    return report_to


# The W&B variables vlexp itself set (JSON), so the next job of a sweep in this process can
# tell them from the ones the user exported, which win.
_SET_BY_VLEXP = "VLEXP_WANDB_SET"
INIT_TIMEOUT_S = 30.0  # wandb's own default, 90 s, stalls a run whose server is unreachable
FINISH_TIMEOUT_S = 60.0


def _users(name: str) -> str | None:
    """The value of `name` when the user set it (not vlexp, for an earlier job)."""
    value = os.environ.get(name)
    ours = json.loads(os.environ.get(_SET_BY_VLEXP) or "{}")
    return None if value is None or ours.get(name) == value else value


def _configure_wandb(logger_cfg: Any, run_dir: Path) -> None:
    mode = wandb_mode(logger_cfg.get("mode", "auto"))
    # A server that cannot be reached fails wandb.init within this, and the guarded callback
    # (patches.guard_logging_integrations) then switches W&B off while training goes on.
    init_timeout = _users("WANDB_INIT_TIMEOUT") or logger_cfg.get("init_timeout") or INIT_TIMEOUT_S
    tags = [str(tag) for tag in (logger_cfg.get("tags") or [])]
    env = {
        "WANDB_PROJECT": str(logger_cfg.project),
        "WANDB_ENTITY": logger_cfg.get("entity"),
        "WANDB_DIR": str(run_dir),  # offline runs land in <run dir>/wandb/offline-run-*
        "WANDB_MODE": mode,
        "WANDB_NAME": logger_cfg.get("run_name"),
        "WANDB_RUN_GROUP": logger_cfg.get("group"),
        "WANDB_TAGS": ",".join(tags) or None,
        # The id lives in the run dir, so a run resumed there continues the same W&B run.
        "WANDB_RUN_ID": wandb_run_id(run_dir),
        "WANDB_RESUME": "allow",
        "WANDB_INIT_TIMEOUT": str(init_timeout),
        # No ~40-line history/summary footer at the end: vlexp's own summary says it (and
        # names `wandb sync` for offline runs). WANDB_QUIET=false in the shell brings it back.
        "WANDB_QUIET": os.environ.get("WANDB_QUIET", "true"),
    }
    for key, value in env.items():
        # Jobs of one `-m` sweep share this process: clear what the previous job set.
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = str(value)
    os.environ[_SET_BY_VLEXP] = json.dumps(
        {"WANDB_MODE": mode, "WANDB_INIT_TIMEOUT": str(init_timeout)}
    )


def wandb_mode(mode: str) -> str:
    """`auto` is online only when credentials exist, so a run never hangs on a login prompt."""
    if mode not in ("auto", "online", "offline", "disabled"):
        raise ValueError(f"logger.mode={mode!r}: use auto, online, offline or disabled")
    if mode != "auto":
        return mode
    exported = _users("WANDB_MODE")
    if exported:  # the user's WANDB_MODE (online with a key wandb finds elsewhere, ...) wins
        return exported
    has_key = bool(os.environ.get("WANDB_API_KEY")) or _netrc_has_wandb()
    return "online" if has_key else "offline"


def wandb_run_id(run_dir: Path) -> str:
    """The W&B run id stored in the run dir, created (by rank 0) on first use."""
    path = Path(run_dir) / WANDB_ID_FILE
    if path.is_file():
        return path.read_text().strip()
    run_id = secrets.token_hex(4)
    if os.environ.get("RANK", "0") == "0":
        path.write_text(run_id + "\n")
    return run_id


def _netrc_has_wandb() -> bool:
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


def finish_wandb_run() -> None:
    """Close the open W&B run, if any, and wait until its records are written.

    Called when training ends: wandb's exit hook alone hands the last records to its service
    process, so the offline run files (and `wandb sync`) could miss the final steps when the
    machine is busy."""
    wandb = sys.modules.get("wandb")
    if wandb is None or getattr(wandb, "run", None) is None:
        return
    # Online, finish waits for the upload: bounded, so an unreachable server cannot hold the
    # run (the local copy under RUN_DIR/wandb/ has every record; `wandb sync` uploads it).
    closing = threading.Thread(target=wandb.finish, name="vlexp-wandb-finish", daemon=True)
    closing.start()
    closing.join(FINISH_TIMEOUT_S)
    if closing.is_alive():
        logging.getLogger("vlexp").warning(
            "W&B did not finish uploading within %.0f s; the run's records are under "
            "%s/wandb (upload them later with `wandb sync`)",
            FINISH_TIMEOUT_S,
            os.environ.get("WANDB_DIR", "the run dir"),
        )


class WandbHydraConfig(TrainerCallback):
    """Adds the flattened Hydra config to the W&B run that transformers' WandbCallback opened."""

    def __init__(self, cfg: DictConfig) -> None:
        self.config = wandb_config(cfg)

    def on_train_begin(self, args, state, control, **kwargs):
        wandb = sys.modules.get("wandb")
        if state.is_world_process_zero and wandb is not None and wandb.run is not None:
            try:
                wandb.config.update(self.config, allow_val_change=True)
            except Exception as err:  # a logger must never end a run (see vlexp.recipe.faults)
                logging.getLogger("vlexp").warning("W&B config not recorded: %s", err)


def logger_callbacks(cfg: DictConfig) -> list[TrainerCallback]:
    """The W&B config hook when W&B is on (after WandbCallback, which opens the run)."""
    if "wandb" in (cfg.logger.get("report_to") or []):
        return [WandbHydraConfig(cfg)]
    return []


class MetricsJsonl(TrainerCallback):
    """Appends every log event as one JSON line (TRL's metric names), on rank 0 only.

    The end-of-training row also says where its `train_runtime` started: the step
    (`train_start_step`: 0, or the checkpoint a resumed run continued) and the state's token
    count then (`train_start_tokens`), so that tokens/s counts the session's own tokens
    (vlexp.recipe.numbers.throughput)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.last_train_logs: dict[str, Any] = {}
        self.start: dict[str, float] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = {
            numbers.START_STEP: state.global_step,
            numbers.START_TOKENS: getattr(state, "num_input_tokens_seen", 0) or 0,
        }

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        # `eval_x` is written as `eval/x`, the name W&B and TensorBoard show it under.
        logs = {f"eval/{k[5:]}" if k.startswith("eval_") else k: v for k, v in logs.items()}
        record = {"step": state.global_step, "epoch": state.epoch, **_jsonable(logs)}
        if numbers.RUNTIME in logs:
            record.update(self.start)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if not any(key.startswith("eval/") for key in logs):
            self.last_train_logs = record


def _jsonable(logs: dict[str, Any]) -> dict[str, Any]:
    # NaN/inf are kept visible (as strings) rather than written as invalid JSON.
    out = {}
    for key, value in logs.items():
        plain = isinstance(value, int | str | bool | type(None))
        if not plain and not (isinstance(value, float) and math.isfinite(value)):
            value = str(value)
        out[key] = value
    return out
