"""Every command README.md and the manual's pages (docs/*.md) show is exercised
(tests/readme.py says how), and the ones this machine cannot run are checked as far as it can:
they compose, pass the config checks, name installable extras, parse as shell."""

from __future__ import annotations

import io
import re
import shlex
import subprocess
import sys
import tomllib
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from tests import readme
from tests.helpers import REPO
from tests.readme import REGISTRY, ByTest, Elsewhere, Run

SLOW_MODULE = REPO / "tests" / "e2e" / "test_readme_commands.py"


def test_every_readme_command_has_a_way_to_be_exercised():
    """A command added to README.md or a docs/ page needs an entry in tests/readme.py's
    REGISTRY; one no page shows any more leaves it."""
    shown = readme.commands()
    missing = [c for c in shown if c.text not in REGISTRY]
    gone = sorted(set(REGISTRY) - {c.text for c in shown})
    report = [
        f"{c.page}:{c.line} ({c.section}): no test exercises {c.text!r}; add it to "
        "REGISTRY in tests/readme.py (Run, ByTest or Elsewhere with the reason)"
        for c in missing
    ] + [
        f"REGISTRY holds {text!r}, which no page (README.md, docs/) shows: drop or update it"
        for text in gone
    ]
    assert not report, "\n".join(report)
    assert len(shown) >= 60  # the parser still finds the pages' blocks
    assert {c.page for c in shown} >= {"README.md", "docs/quickstart.md", "docs/data.md"}


def test_the_extraction_joins_continuations_and_drops_comments(tmp_path):
    page = tmp_path / "README.md"
    page.write_text(
        "# Title\n\n## Part\n\n```bash\n# a comment line\npython -m vlexp a=1 \\\n    b=2   # why\n"
        "pip install x\n```\n\n```\npython -m not_a_command_but_output\n```\n"
    )
    found = readme.commands(page)
    assert [(c.text, c.line, c.section) for c in found] == [
        ("python -m vlexp a=1 b=2", 5, "Part"),
        ("pip install x", 5, "Part"),
    ]


def test_a_command_on_any_page_of_the_manual_is_found(tmp_path, monkeypatch):
    """A page added under docs/ is scanned without being named anywhere: its commands count,
    and the test above fails on one the registry lacks, naming the page."""
    docs = tmp_path / "docs"
    (docs / "guides").mkdir(parents=True)
    (docs / "guides" / "new.md").write_text("# New\n\n```bash\npython -m vlexp algo=new\n```\n")
    monkeypatch.setattr(readme, "DOCS", docs)
    found = [c for c in readme.commands() if c.page != "README.md"]
    assert [(c.text, c.line, c.section) for c in found] == [("python -m vlexp algo=new", 3, "New")]
    assert found[0].page.endswith("new.md") and found[0].text not in REGISTRY


def test_tests_named_in_the_registry_exist():
    """A ByTest entry, and every test an Elsewhere reason points to, names a real test."""
    named = 0
    for text, how in REGISTRY.items():
        refs = [how.test] if isinstance(how, ByTest) else []
        if isinstance(how, Elsewhere):
            refs = re.findall(r"tests/[\w/]+\.py::\w+", how.why)
        for ref in refs:
            path, _, name = ref.partition("::")
            assert re.search(rf"^def {name}\(", (REPO / path).read_text(), re.M), (text, ref)
            named += 1
    assert named >= 10


def test_each_chain_of_commands_has_its_slow_test():
    source = SLOW_MODULE.read_text()
    chains = {how.chain for how in REGISTRY.values() if isinstance(how, Run) and how.chain}
    for chain in chains:
        assert f"def test_readme_chain_{chain}(" in source, chain


def test_elsewhere_says_why():
    for text, how in REGISTRY.items():
        if isinstance(how, Elsewhere):
            assert len(how.why) > 20, text


# --- Each `python -m vlexp...` command composes and passes the config checks.


def _composable() -> list[str]:
    texts = []
    for text in REGISTRY:
        parsed = readme.module_and_args(text)
        if (
            parsed
            and parsed[0] in ("vlexp", "vlexp.check_data", "vlexp.plan")
            or parsed
            and parsed[0] == "vlexp.evaluate"
            and not any(a.startswith("run=") for a in parsed[1])
        ):
            texts.append(text)
    return texts


@pytest.fixture
def places(tmp_path, monkeypatch) -> dict[str, str]:
    """Stand-ins for what a command names: run dirs with a model, checkpoints, the README's
    own reward (importable, as `PYTHONPATH=.` makes it)."""
    for run in ("rm", "sft"):
        (tmp_path / run / "final").mkdir(parents=True)
        # What a run of the tiny model saves: the family resolves from its model_type.
        (tmp_path / run / "final" / "config.json").write_text('{"model_type": "qwen2_5_vl"}')
    (tmp_path / "exp1" / "checkpoint-2").mkdir(parents=True)
    (tmp_path / "exp1" / "checkpoint-2" / "trainer_state.json").write_text("{}")
    readme.own_reward_files(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return {"tmp": str(tmp_path), "data": str(tmp_path / "data"), "repo": str(REPO)}


def _jobs(args: list[str], hydra_cfg) -> list[list[str]]:
    """The overrides of each job a `-m` command would run (choice and range sweeps expanded;
    an Optuna interval tried at both ends), the sweeper's own `params` included."""
    params = [f"{k}={v}" for k, v in (hydra_cfg.sweeper.get("params") or {}).items()]
    jobs = [[]]
    for override in _parse([*params, *args]):
        key = override.get_key_element()
        if not override.is_sweep_override():
            values = [override.get_value_element_as_str()]
        elif hasattr(override.value(), "start") and hasattr(override.value(), "end"):
            values = [str(override.value().start), str(override.value().end)]
        else:
            values = list(override.sweep_string_iterator())
        jobs = [[*job, f"{key}={value}"] for job in jobs for value in values]
    return jobs


def _parse(args: list[str]) -> list:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides(args)


def compose_jobs(module: str, args: list[str]) -> list:
    """The config of each job the command would run (one unless it is a `-m` sweep)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import get_class

    from vlexp.paths import config_dir

    args = [a for a in args if a != "-m"]
    if "--show" in args:  # check_data's own option
        at = args.index("--show")
        args = args[:at] + args[at + 2 :]
    hydra_args = [a for a in args if a.startswith(("hydra/", "hydra."))]
    job_args = [a for a in args if a not in hydra_args and not a.startswith("plan.")]
    fixed = [
        a for a, o in zip(job_args, _parse(job_args), strict=True) if not o.is_sweep_override()
    ]
    name = "evaluate" if module == "vlexp.evaluate" else "config"
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        whole = compose(name, overrides=[*hydra_args, *fixed], return_hydra_config=True)
        # The launcher and sweeper a command picks are installed (Hydra imports them).
        get_class(whole.hydra.launcher._target_)
        get_class(whole.hydra.sweeper._target_)
        return [
            compose(name, overrides=[*hydra_args, *job]) for job in _jobs(job_args, whole.hydra)
        ]


@pytest.mark.parametrize("text", _composable(), ids=lambda text: text[10:90])
def test_readme_command_composes_and_passes_the_config_checks(text, places):
    """As `python -m vlexp ... --cfg job` would print it, then vlexp's checks: the ones about
    the config must pass; the ones about this machine pass, or say what the registry says."""
    from vlexp.validate import ConfigError, validate

    how = REGISTRY[text]
    text = readme.fill(text, getattr(how, "files", {}), places).replace("$PWD", places["tmp"])
    module, args = readme.module_and_args(text)
    configs = compose_jobs(module, args)
    assert configs
    for cfg in configs:
        if module == "vlexp.evaluate":
            assert cfg.get("run") is None and cfg.data.eval
            continue
        validate(cfg, machine=False)
        expected = how.machine if isinstance(how, Elsewhere) else None
        if module == "vlexp.plan":  # plans a GPU job: the planner skips this machine's checks
            pass
        elif expected is None:
            validate(cfg)
        else:
            with pytest.raises(ConfigError, match=re.escape(expected)):
                validate(cfg)
        _check_launch(cfg)


def _check_launch(cfg) -> None:
    """A multi-process command: the `accelerate launch` line it would start (the dry plan)."""
    from vlexp.recipe import launch

    if cfg.launcher.get("num_processes", 1) <= 1:
        return
    assert launch.wanted(cfg)
    line = launch.accelerate_command(cfg.launcher, Path("run/config.resolved.yaml"))
    at = line.index("--num_processes")
    assert line[at + 1] == str(cfg.launcher.num_processes) and "--multi_gpu" in line
    assert line[-3:] == ["-m", "vlexp.worker", "run/config.resolved.yaml"]


def test_the_slurm_script_parses_and_its_command_composes_for_two_nodes(tmp_path, places):
    from vlexp.recipe import launch
    from vlexp.validate import validate

    script = next(text for text in REGISTRY if text.startswith("#!/bin/bash\n#SBATCH"))
    path = tmp_path / "job.sbatch"
    path.write_text(script + "\n")
    subprocess.run(["bash", "-n", str(path)], check=True)
    inner = re.search(r"srun bash -c '(.*)'", script, re.S).group(1).replace("\\\n", " ")
    slurm = {"$SLURM_NNODES": "2", "$SLURM_NODEID": "1", "$MASTER_ADDR": "10.0.0.1",
             "$SLURM_JOB_ID": "77"}  # fmt: skip
    for name, value in slurm.items():
        inner = inner.replace(name, value)
    module, args = readme.module_and_args(inner)
    (cfg,) = compose_jobs(module, args)
    validate(cfg, machine=False)
    line = launch.accelerate_command(cfg.launcher, Path("x.yaml"))
    pairs = dict(zip(line, line[1:], strict=False))
    assert pairs["--num_processes"] == "16" and pairs["--num_machines"] == "2"
    assert pairs["--machine_rank"] == "1" and pairs["--main_process_ip"] == "10.0.0.1"
    assert pairs["--main_process_port"] == "29500"
    assert cfg.resume == "auto"


def test_the_readme_plan_prints_what_the_readme_shows(capsys):
    """The planner's answer for the 7B GRPO job is the README's, line for line."""
    from vlexp import plan

    text = "python -m vlexp.plan model=qwen2_5_vl_7b algo=grpo plan.gpu_mem_gb=80"
    assert text in REGISTRY
    page = "\n".join(path.read_text() for path in readme.pages())
    shown = re.search(r"```bash\n" + re.escape(text) + r"\n```\n```\n(.*?)```", page, re.S)
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        status = plan.main(shlex.split(text)[3:])
    assert status == 1  # does not fit, as the README says
    assert buffer.getvalue().strip() == shown.group(1).strip()


# --- pip, pytest, ruff and shell lines


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_pip_lines_install_what_pyproject_declares():
    project = _pyproject()["project"]
    extras = project["optional-dependencies"]
    depends = {re.split(r"[<>=\[ ;]", d)[0] for d in project["dependencies"]}
    pips = [part for t in REGISTRY for part in t.split("&&") if part.strip().startswith("pip ")]
    assert len(pips) >= 4
    for pip in pips:
        words = shlex.split(pip)
        if "-e" in words:
            target = words[words.index("-e") + 1]
            assert target.startswith("."), pip
            for extra in re.findall(r"\[(.*)\]", target):
                assert all(e in extras for e in extra.split(",")), pip
        else:  # the CPU torch line: it pre-installs dependencies `pip install -e .` keeps
            names = [w for w in words[2:] if not w.startswith("-") and "://" not in w]
            assert names and set(names) <= depends, pip
    # The README's other extras, in prose: `pip install -e ".[sweep]"`, `"vlexp[gpu]"`.
    assert {"dev", "sweep", "gpu"} <= set(extras)


def test_the_pytest_lines_select_registered_markers():
    markers = " ".join(_pyproject()["tool"]["pytest"]["ini_options"]["markers"])
    for text in REGISTRY:
        for expression in re.findall(r'pytest -m "([^"]+)"', text):
            for word in set(re.findall(r"\w+", expression)) - {"not", "and", "or"}:
                assert f"{word}:" in markers, (text, word)


def test_the_readme_lint_command_passes():
    text = "ruff check src tests && ruff format --check src tests"
    assert text in REGISTRY
    ruff = Path(sys.executable).with_name("ruff")
    result = subprocess.run(
        text.replace("ruff ", f"{ruff} "), shell=True, cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_the_readme_shell_scripts_exist_and_parse():
    lines = [shlex.split(t) for t in REGISTRY if t.startswith("bash ")]
    assert {words[1] for words in lines} == {"bench/fetch_wheels.sh", "bench/device_run.sh"}
    for words in lines:
        subprocess.run(["bash", "-n", str(REPO / words[1])], check=True)
        if words[1] == "bench/device_run.sh" and words[2:]:
            # Its extra arguments go to bench/gpu.py, whose parser must take them.
            gpu = [sys.executable, str(REPO / "bench" / "gpu.py"), *words[2:], "--help"]
            result = subprocess.run(gpu, cwd=REPO, capture_output=True, text=True)
            assert result.returncode == 0, (words, result.stderr[-1000:])
