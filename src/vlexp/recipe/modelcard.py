"""A model card that tells the truth: what was trained from what, how, on which data, with
which result, and how to load it. Replaces the card TRL writes into the run dir (whose base
model reads "[None](https://huggingface.co/None)" for local and tiny models)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from vlexp.config import algo as algorithm
from vlexp.config import reward as reward_config

CARD = "README.md"
# The shared knobs worth a line on the card (the whole config is in config.resolved.yaml).
TRAIN_KEYS = (
    "max_steps",
    "learning_rate",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "seed",
)


def write(cfg: DictConfig, run_dir: Path, summary: dict[str, Any]) -> list[Path]:
    """README.md into the run dir and its final/ (when it exists); returns the paths."""
    run_dir = Path(run_dir)
    text = render(cfg, run_dir, summary)
    targets = [run_dir / CARD]
    if (run_dir / "final").is_dir():
        targets.append(run_dir / "final" / CARD)
    for path in targets:
        path.write_text(text, encoding="utf-8")
    return targets


def render(cfg: DictConfig, run_dir: Path, summary: dict[str, Any]) -> str:
    base = str(cfg.model.name_or_path)
    adapter = (run_dir / "final" / "adapter_config.json").is_file()
    meta: dict[str, Any] = {
        "library_name": "peft" if adapter else "transformers",
        "pipeline_tag": "image-text-to-text",
        "tags": ["vlexp", "trl", str(cfg.algo.name)],
    }
    if _is_hub_id(base):
        meta["base_model"] = base
    lines = [
        "---",
        yaml.safe_dump(meta, sort_keys=False).rstrip(),
        "---",
        "",
        f"# {Path(run_dir).name}: {cfg.algo.name} on {cfg.data.name}",
        "",
        f"Trained with vlexp from the base model `{base}` "
        f"(`model={cfg.model.name}`) with **{cfg.algo.name}** "
        f"({summary.get('trainer') or 'TRL'}), on the data `{cfg.data.name}` "
        f"({_splits(summary['data'])}).",
        "",
        "## Training",
        "",
        f"- command: `{' '.join(['python -m vlexp', *_overrides(run_dir)])}`",
        f"- steps: {summary['steps']} of {summary['max_steps']}, "
        f"{_seconds(summary.get('train_runtime_s'))} of training, "
        f"{_rate(summary.get('tokens_per_s'))}, peak memory {summary['peak_memory_gb']:.2f} GB "
        f"({summary['peak_memory_of']})",
        *[f"- train.{key}: {cfg.train.get(key)}" for key in TRAIN_KEYS if key in cfg.train],
        f"- memory: {_memory(cfg)}",
    ]
    weights = reward_config.weights(cfg) if algorithm.of(cfg).rewards else {}
    if weights:
        shown = ", ".join(f"{name} (weight {weight})" for name, weight in weights.items())
        lines.append(f"- rewards: {shown}")
    lines += [
        "- the full resolved config: `config.resolved.yaml` in the run dir",
        "",
        "## Results",
        "",
        *results_table(summary),
        "",
        "## Use",
        "",
        *usage(loadable(base), adapter, str(Path(run_dir).resolve() / "final")),
        "",
    ]
    return "\n".join(lines)


def results_table(summary: dict[str, Any]) -> list[str]:
    metrics = summary.get("metrics") or {}
    if not metrics:
        return ["No training metrics were logged."]
    n = max(m["mean_of"] for m in metrics.values())
    which = (
        "the first and the last logged step"
        if n == 1
        else (f"means of the first and of the last {n} logged steps")
    )
    lines = [
        f"Training metrics ({which}):",
        "",
        "| metric | first | last |",
        "|---|---|---|",
    ]
    lines += [f"| {key} | {m['first']:.4g} | {m['last']:.4g} |" for key, m in metrics.items()]
    evaluated = summary.get("eval")
    if evaluated:
        lines += ["", f"Evaluation on the eval split at step {evaluated.get('step')}:", ""]
        lines += [f"- {k}: {v:.4g}" for k, v in evaluated.items() if k != "step"]
    else:
        lines += ["", "Not evaluated during training: `python -m vlexp.evaluate run=RUN_DIR`."]
    return lines


def usage(base: str, adapter: bool, final: str) -> list[str]:
    """How to load final/ (full weights, or the base model plus the LoRA adapter)."""
    if adapter:
        return [
            "`final/` holds a LoRA adapter and the processor:",
            "",
            "```python",
            "from peft import PeftModel",
            "from transformers import AutoModelForImageTextToText, AutoProcessor",
            "",
            f'base = AutoModelForImageTextToText.from_pretrained("{base}")',
            f'model = PeftModel.from_pretrained(base, "{final}")',
            f'processor = AutoProcessor.from_pretrained("{final}")',
            "```",
        ]
    return [
        "`final/` holds the full weights and the processor (with the run's pixel budget):",
        "",
        "```python",
        "from transformers import AutoModelForImageTextToText, AutoProcessor",
        "",
        f'model = AutoModelForImageTextToText.from_pretrained("{final}")',
        f'processor = AutoProcessor.from_pretrained("{final}")',
        "```",
    ]


def loadable(name_or_path: str) -> str:
    """The base as `from_pretrained` takes it from any working directory: the tiny build's
    folder for `tiny://NAME` (a vlexp scheme transformers does not know), a local folder as an
    absolute path, a hub id as it is."""
    from vlexp.models.loading import TINY_SCHEME, resolve_path

    if name_or_path.startswith(TINY_SCHEME):
        return resolve_path(name_or_path)
    local = Path(name_or_path).expanduser()
    return str(local.resolve()) if local.exists() else name_or_path


def _is_hub_id(name: str) -> bool:
    return "://" not in name and not Path(name).expanduser().exists() and name.count("/") == 1


def _overrides(run_dir: Path) -> list[str]:
    path = Path(run_dir) / ".hydra" / "overrides.yaml"
    try:
        return [str(item) for item in yaml.safe_load(path.read_text(encoding="utf-8")) or []]
    except (OSError, yaml.YAMLError):
        return []


def _memory(cfg: DictConfig) -> str:
    memory = OmegaConf.to_container(cfg.memory, resolve=True) if "memory" in cfg else {}
    on = [key for key, value in (memory or {}).items() if value not in (None, False)]
    return ", ".join(on) or "full fine-tuning, nothing special"


def _splits(data: dict[str, Any]) -> str:
    """`train: `X`, eval: `Y``, or `train: `X`, no eval split` when the run had none."""
    evaluated = f"eval: `{data['eval']}`" if data.get("eval") else "no eval split"
    return f"train: `{data['train']}`, {evaluated}"


def _rate(tokens_per_s: float | None) -> str:
    return "tokens/s not logged" if tokens_per_s is None else f"{tokens_per_s:.1f} tokens/s"


def _seconds(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f} s"
