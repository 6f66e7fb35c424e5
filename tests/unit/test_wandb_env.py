"""W&B: the user's WANDB_MODE wins over logger.mode=auto; an unreachable server costs a
bounded time at start and at the end."""

from __future__ import annotations

import logging
import os
import sys
import time
import types

import pytest
from omegaconf import OmegaConf

from vlexp.recipe import tracking


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_INIT_TIMEOUT", "VLEXP_WANDB_SET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    for name in ("WANDB_PROJECT", "WANDB_DIR", "WANDB_RUN_ID", "WANDB_RESUME", "WANDB_NAME"):
        monkeypatch.setenv(name, "")  # configure sets them; monkeypatch restores them after
    return tmp_path


def _configure(tmp_path, **logger):
    cfg = OmegaConf.create({"report_to": ["wandb"], "project": "p", "mode": "auto", **logger})
    tracking.configure(cfg, tmp_path)
    return os.environ["WANDB_MODE"], os.environ["WANDB_INIT_TIMEOUT"]


def test_a_user_set_wandb_mode_online_is_respected(clean_env, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "online")  # no key visible to vlexp
    assert _configure(clean_env) == ("online", "30.0")


def test_auto_is_offline_without_a_key_and_a_later_job_recomputes_it(clean_env, monkeypatch):
    assert _configure(clean_env)[0] == "offline"  # set by vlexp, not the user's
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert _configure(clean_env)[0] == "online"  # the next job of a sweep, now with a key


def test_the_init_timeout_is_bounded_and_the_users_wins(clean_env, monkeypatch):
    assert _configure(clean_env, init_timeout=7)[1] == "7"
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "12")
    assert _configure(clean_env)[1] == "12"


def test_finishing_a_run_that_cannot_upload_is_bounded(monkeypatch, caplog):
    fake = types.SimpleNamespace(run=object(), finish=lambda: time.sleep(30))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.setattr(tracking, "FINISH_TIMEOUT_S", 0.3)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="vlexp"):
        tracking.finish_wandb_run()
    assert time.monotonic() - started < 3
    assert "W&B did not finish uploading within" in caplog.text and "wandb sync" in caplog.text
