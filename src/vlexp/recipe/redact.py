"""Keep credentials out of everything vlexp writes or logs.

A secret is (a) the value of an environment variable whose name says it holds one
(`WANDB_API_KEY`, `HF_TOKEN`, `AWS_SECRET_ACCESS_KEY`, ...), (b) whatever an `${oc.env:NAME}`
interpolation of such a variable resolves to, or (c) the value of a config key whose name
says it holds one (`api_key`, `hub_token`, `password`, ...). Each is replaced by
`REDACTED` before a config reaches config.resolved.yaml, `.hydra/` or the W&B config.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

REDACTED = "<redacted>"
# Environment names: KEY/TOKEN/SECRET/... as a whole `_`-separated word, so that
# TOKENIZERS_PARALLELISM or KEYBOARD are not taken for secrets.
_SECRET_ENV = re.compile(
    r"(^|_)(API_?KEY|KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)($|_)", re.I
)
# Config keys: narrower, since `pad_token` or `max_tokens` are ordinary settings.
_SECRET_KEY = re.compile(
    r"(api_?key|secret|password|passwd|credentials?|^token|(hub|auth|access|api|hf|wandb)_?token)$",
    re.I,
)
_ENV_INTERPOLATION = re.compile(r"\$\{oc\.env:\s*([A-Za-z_][A-Za-z0-9_]*)")
# Shorter values are too likely to occur by chance ("true", "0.04") to be masked as text.
_MIN_SECRET_LEN = 8


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    """Values of secret-named environment variables, longest first."""
    environ = os.environ if environ is None else environ
    found = {
        value
        for name, value in environ.items()
        if _SECRET_ENV.search(name) and len(value) >= _MIN_SECRET_LEN
    }
    return sorted(found, key=len, reverse=True)


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(str(key)))


def scrub_text(text: str, secrets: list[str] | None = None) -> str:
    """`text` with every secret value replaced by REDACTED."""
    for value in secret_values() if secrets is None else secrets:
        text = text.replace(value, REDACTED)
    return text


def redacted_container(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain data, with every secret replaced by REDACTED."""
    secrets = secret_values()
    raw = OmegaConf.to_container(cfg, resolve=False)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    return _walk(resolved, raw, secrets)


def _walk(value: Any, raw: Any, secrets: list[str]) -> Any:
    if isinstance(value, dict):
        raw = raw if isinstance(raw, dict) else {}
        return {
            key: REDACTED
            if is_secret_key(key) and value[key] not in (None, "")
            else _walk(value[key], raw.get(key), secrets)
            for key in value
        }
    if isinstance(value, list):
        raw = raw if isinstance(raw, list) and len(raw) == len(value) else [None] * len(value)
        return [_walk(item, raw_item, secrets) for item, raw_item in zip(value, raw, strict=True)]
    if isinstance(raw, str) and any(
        _SECRET_ENV.search(name) for name in _ENV_INTERPOLATION.findall(raw)
    ):
        return REDACTED
    if isinstance(value, str):
        return scrub_text(value, secrets)
    return value


def to_yaml(cfg: DictConfig | ListConfig) -> str:
    """YAML of the resolved, redacted config."""
    return OmegaConf.to_yaml(OmegaConf.create(redacted_container(cfg)))


def scrub_files(folder: Path) -> None:
    """Rewrite the YAML files Hydra wrote (`.hydra/`) without secret values.

    Hydra saves the composed config unresolved, so `${oc.env:...}` stays text there; a
    secret reaches these files only when typed (or shell-expanded) into an override.
    """
    secrets = secret_values()
    for path in Path(folder).glob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        cleaned = _scrub_secret_keys(scrub_text(text, secrets))
        if cleaned != text:
            path.write_text(cleaned, encoding="utf-8")


def _scrub_secret_keys(text: str) -> str:
    # `key: value` lines and `- key=value` overrides whose key names a secret.
    def mask(match: re.Match) -> str:
        key = match.group(2).split(".")[-1]  # `model.token`: the last part names it
        return match.group(1) + REDACTED if is_secret_key(key) else match.group(0)

    text = re.sub(r"^([ \t]*([\w.+~/-]+):[ \t]+)(\S.*)$", mask, text, flags=re.M)
    text = re.sub(r"^([ \t]*-[ \t]*[+~]*([\w./-]+)=)(.+)$", mask, text, flags=re.M)
    # `key=value` inside a line, e.g. Hydra's `override_dirname: +algo.args.hub_token=X,lr=1`.
    return _OVERRIDE.sub(mask, text)


# An override `[+~]key.path=value` anywhere in a line; the value ends at a comma or a space.
_OVERRIDE = re.compile(r"((?<![\w.+~/-])[+~]*([\w./-]+)=)([^,\s]+)")


def scrub_override(argument: str, secrets: list[str] | None = None) -> str:
    """A command-line argument without secrets: `+algo.args.hub_token=X` keeps its key."""
    return _scrub_secret_keys(scrub_text(argument, secrets))


def scrub_argv() -> None:
    """Redact secrets in this process's `sys.argv` once Hydra has read it: W&B copies the
    command line into its run files (`args` in the run's metadata)."""
    import sys

    secrets = secret_values()
    sys.argv[1:] = [scrub_override(argument, secrets) for argument in sys.argv[1:]]


def redacted_args(args: Any) -> Any:
    """A shallow copy of trainer arguments with secret fields (`hub_token`, ...) and secret
    values in any string field redacted; `args` itself when there is nothing to hide.

    transformers pickles the arguments into every checkpoint's `training_args.bin`; its own
    `to_dict` masks `*_token` fields, the pickle does not."""
    import copy
    import dataclasses

    secrets = secret_values()
    changes = {}
    for item in dataclasses.fields(args) if dataclasses.is_dataclass(args) else ():
        value = getattr(args, item.name, None)
        if value in (None, ""):
            continue
        if is_secret_key(item.name):
            changes[item.name] = REDACTED
        elif isinstance(value, str | dict | list):
            cleaned = _scrub_value(value, secrets)
            if cleaned != value:
                changes[item.name] = cleaned
    if not changes:
        return args
    clean = copy.copy(args)
    for name, value in changes.items():
        object.__setattr__(clean, name, value)
    return clean


def _scrub_value(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return scrub_text(value, secrets)
    if isinstance(value, dict):
        return {
            k: REDACTED if is_secret_key(k) and v not in (None, "") else _scrub_value(v, secrets)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_scrub_value(v, secrets) for v in value]
    return value
