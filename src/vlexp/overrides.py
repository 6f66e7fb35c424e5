"""The command line's overrides, checked before Hydra runs: one line per mistake, the same for
every entry point that takes overrides (`python -m vlexp`, `.plan`, `.check_data`, `.evaluate`).

Hydra answers a bad override with several lines of its own and "Set the environment variable
HYDRA_FULL_ERROR=1 ...", and accepts a value of the wrong type (`train.max_steps=abc`) that the
trainer then fails on minutes later with a traceback. Composing here first, with Hydra's own
argument parser, override parser and compose API, finds both in a fraction of a second.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig


class Stop(Exception):
    """The one line to print (it starts with `vlexp: `)."""


@dataclass
class Checked:
    """What the check found: the one line to print (None: nothing wrong), and, when it
    composed the config, the `hydra.mode` that config sets (None when it sets none)."""

    line: str | None = None
    composed: bool = False
    mode: Any = None


def problem(
    args: list[str], config_name: str = "config", command: str = "python -m vlexp"
) -> str | None:
    """The one line for the first override of `args` the config cannot take, else None.

    `args` is the command line as typed (options included); `command` is the entry point whose
    `--cfg job` lists every key.
    """
    return check(args, config_name, command).line


def check(
    args: list[str], config_name: str = "config", command: str = "python -m vlexp"
) -> Checked:
    """`problem`'s check, with what the composition it made says (`Checked`)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from vlexp.paths import config_dir

    known = _hydra_args(args)
    if known is None or not known.overrides or known.config_dir or known.config_path:
        return Checked()  # nothing to check, or a config tree of the user's: Hydra's own answer
    checked = Checked(composed=True)
    try:
        parsed = [_parse(text) for text in known.overrides]
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            for job in _jobs(parsed) if known.multirun else [parsed]:
                name = known.config_name or config_name
                cfg = _compose_or_stop(name, [_text(o) for o in job], command)
                _stop_on_wrong_type(name, job, cfg)
                checked.mode = cfg.hydra.mode
    except Stop as stop:
        return Checked(line=str(stop))
    finally:
        GlobalHydra.instance().clear()
    return checked


def first_line(err: BaseException) -> str:
    """Any other Hydra error as one vlexp line: its message's lines joined, without OmegaConf's
    `full_key:`/`object_type=` detail lines or Hydra's search-path listing."""
    text = str(err).split("\nConfig search path:")[0]
    kept = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not re.match(r"\s*(full_key:|object_type=|reference_type=)", line)
    ]
    return f"vlexp: config error: {' '.join(kept) or type(err).__name__}"


def _hydra_args(args: list[str]) -> Any:
    """`args` read by Hydra's own argument parser; None when Hydra will not compose them."""
    from hydra._internal.utils import get_args_parser

    try:
        known, _ = get_args_parser().parse_known_args(args)
    except SystemExit:  # --version, or an option Hydra rejects: Hydra answers it
        return None
    return None if known.shell_completion else known


def _parse(text: str) -> Any:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return OverridesParser.create().parse_override(text)
    except HydraException as err:
        reason = str(err).splitlines()[0]
        raise Stop(
            f"vlexp: cannot read the override {text!r}: {reason} (quote values with spaces "
            "or special characters: key='a value')"
        ) from None


def _text(override: Any) -> str:
    return str(override.input_line)


def _jobs(parsed: list[Any]) -> list[list[Any]]:
    """The jobs that check a sweep: every swept key at its first value, then each other value
    of each swept key in turn (a sweep of 2 x 3 values: 1 + 1 + 2 = 4 jobs, not 6)."""
    values = [_sweep_values(o) for o in parsed]
    first = [v[0] for v in values if v]
    jobs = [first]
    for at, swept in enumerate(values):
        for other in swept[1:]:
            jobs.append([other if i == at else v[0] for i, v in enumerate(values) if v])
    return jobs


def _sweep_values(override: Any) -> list[Any]:
    """A sweep override (`a=1,2`, `range(1,3)`, `interval(0,1)`) as one override per value; a
    glob sweeps the group's own options, which compose anyway: none."""
    from hydra.core.override_parser.types import Glob, IntervalSweep

    if not override.is_sweep_override():
        return [override]
    value = override.value()
    if isinstance(value, Glob):
        return []
    if isinstance(value, IntervalSweep):
        words = [str(value.start), str(value.end)]
    else:
        words = list(override.sweep_string_iterator())
    return [_parse(f"{override.get_key_element()}={word}") for word in words]


def _compose(config_name: str, overrides: list[str]) -> DictConfig:
    from hydra import compose

    return compose(config_name, overrides=overrides, return_hydra_config=True)


def _compose_or_stop(config_name: str, overrides: list[str], command: str) -> DictConfig:
    from hydra.errors import HydraException, MissingConfigException
    from omegaconf.errors import OmegaConfBaseException

    try:
        return _compose(config_name, overrides)
    except MissingConfigException as err:
        raise Stop(_missing_option(err, config_name, overrides)) from None
    except (HydraException, OmegaConfBaseException) as err:
        message = str(err)
        if re.match(r"Could not (override|delete from config\.) '", message):
            raise Stop(_unknown_keys(config_name, overrides, command)) from None
        raise Stop(_other_composition_error(message, overrides)) from None


def _missing_option(err: Any, config_name: str, overrides: list[str]) -> str:
    """`algo=grop`: the group's options and the closest one."""
    from hydra.core.global_hydra import GlobalHydra

    group, _, option = str(err.missing_cfg_file).rpartition("/")
    if not group:
        return first_line(err)
    # With the overrides: `hydra.searchpath=[...]` adds options of the user's own.
    loader = GlobalHydra.instance().config_loader()
    others = [o for o in overrides if _key(o).replace(".", "/") != group]
    try:
        options = err.options or loader.get_group_options(
            group, config_name=config_name, overrides=others
        )
    except Exception:  # another override is wrong too: the shipped options still help
        options = loader.get_group_options(group)
    typed = next((o for o in overrides if _key(o).replace(".", "/") == group), None)
    close = difflib.get_close_matches(option, options, n=1, cutoff=0.6)
    said = f"{typed}: " if typed else ""
    guess = f": did you mean {close[0]}?" if close else ""
    return (
        f"vlexp: {said}{option} is not an option of {group}{guess} (options: {', '.join(options)})"
    )


def _other_composition_error(message: str, overrides: list[str]) -> str:
    """`+key=` for a key that exists (a value or a group already chosen), else Hydra's line."""
    found = re.match(r"Could not append to config\. An item is already at '([^']+)'", message)
    found = found or re.match(r"(\S+) appears more than once in the final defaults list", message)
    if found:
        key = found.group(1)
        typed = next((o for o in overrides if _key(o) == key and o.startswith("+")), key)
        return (
            f"vlexp: {typed}: {key} is already in the config: drop the + to change it "
            f"({typed.lstrip('+')})"
        )
    return first_line(Exception(message))


def _key(override: str) -> str:
    return override.partition("=")[0].lstrip("~+")


def _unknown_keys(config_name: str, overrides: list[str], command: str) -> str:
    """For overrides of keys the config lacks: every such key, and the closest existing one.

    Hydra stops at the first: drop it and compose again, until the rest compose.
    """
    typed, unknown = list(overrides), []
    while True:
        try:
            cfg = _compose(config_name, overrides)
            break
        except Exception as err:
            found = re.match(r"Could not (?:override|delete from config\.) '([^']+)'", str(err))
            if not found or found.group(1) in unknown:
                return first_line(err)
        unknown.append(found.group(1))
        overrides = [o for o in overrides if _key(o) != unknown[-1]]
    key, also = unknown[0], "".join(f" (nor is {other})" for other in unknown[1:])
    close = difflib.get_close_matches(key, dotted_keys(cfg), n=1, cutoff=0.75)
    if not close:
        return (
            f"vlexp: {key} is not a key of the config{also} ({command} --cfg job prints them all)"
        )
    value = next((o.partition("=")[2] for o in typed if _key(o) == key and "=" in o), None)
    suggestion = close[0] if value is None else f"{close[0]}={value}"
    return f"vlexp: {key} is not a key of the config{also}: did you mean {suggestion}?"


def dotted_keys(cfg: DictConfig) -> list[str]:
    """Every key of `cfg` as a dotted path, nodes included (`train`, `train.max_steps`)."""
    from omegaconf import OmegaConf

    def walk(node: Any, prefix: str) -> list[str]:
        if not isinstance(node, dict):
            return []
        keys = []
        for key, value in node.items():
            path = f"{prefix}{key}"
            keys += [path, *walk(value, path + ".")]
        return keys

    return walk(OmegaConf.to_container(cfg, resolve=False), "")


def _stop_on_wrong_type(config_name: str, parsed: list[Any], cfg: DictConfig) -> None:
    """`train.max_steps=abc`: a word where the config holds a number or a boolean.

    The value the key holds without the command's own values (group choices kept) gives the
    type; Hydra would pass the word on and the trainer fail on it minutes later.
    """
    from hydra.core.global_hydra import GlobalHydra

    repository = GlobalHydra.instance().config_loader().repository
    words = [
        o
        for o in parsed
        if not (o.is_add() or o.is_force_add() or o.is_delete() or o.package is not None)
        and not o.key_or_group.startswith("hydra.")
        and not repository.group_exists(o.key_or_group.replace(".", "/"))
        and _is_word(o.value())
    ]
    if not words:
        return
    kept = [_text(o) for o in parsed if o not in words]
    base = _compose(config_name, kept)
    for override in words:
        was = _value_at(base, override.key_or_group)
        if isinstance(was, bool):
            raise Stop(f"vlexp: {_text(override)}: {override.key_or_group} takes true or false")
        if isinstance(was, int | float):
            raise Stop(
                f"vlexp: {_text(override)}: {override.key_or_group} takes a number "
                f"(e.g. {override.key_or_group}={was})"
            )


def _is_word(value: Any) -> bool:
    """A string, list or dict value that is no interpolation (`${...}` resolves later)."""
    if isinstance(value, str):
        return "${" not in value
    return isinstance(value, list | dict)


def _value_at(cfg: DictConfig, key: str) -> Any:
    from omegaconf import OmegaConf

    try:
        return OmegaConf.select(cfg, key, throw_on_missing=False)
    except Exception:  # an interpolation that resolves only in a run (${now:}, ${oc.env:})
        return None
