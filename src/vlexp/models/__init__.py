"""Models: loading any checkpoint with `from_pretrained` (`loading`), the tiny builds
(`tiny`) and the bundled `config.json` copies the planner reads (`configs/`)."""
