"""Every command README.md and the manual's pages (docs/*.md) show, and how a test exercises it.

`commands()` reads the commands out of the ```bash blocks of every page in `PAGES` (a `\\` continuation joined
into one line, a trailing `# comment` dropped; a `#!` script is one command). `REGISTRY` maps
each command, exactly as `commands()` gives it, to how it is exercised:

- `Run`: run for real here, by tests/e2e/test_readme_commands.py (slow): the README's text,
  with its placeholder paths (`/data/train.jsonl`, `outputs/DATE/TIME`, ...) swapped for real
  files or the run dirs of earlier commands of the same `chain`, and `cheap` overrides
  appended (fewer steps; Hydra takes the last value of a key).
- `ByTest`: run for real by an existing test, named here.
- `Elsewhere`: cannot run on this machine (a GPU, a hub download, a cluster, an install from
  the network: `why` says which). tests/unit/test_readme_commands.py still checks it as far as
  it goes: every `python -m vlexp...` command composes (each job of a `-m` sweep) and passes
  every config check that does not ask about this machine; `machine` is what the checks of
  this machine say instead of running it; pip lines name extras pyproject.toml declares;
  shell scripts pass `bash -n`.

tests/unit/test_readme_commands.py fails, naming the command and its page and line, when a
page shows a command the registry lacks (add an entry) or the registry holds one no page
shows any more (drop or update it).
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"


def pages() -> list[Path]:
    """README.md, then every page of the manual (a new page is scanned without a word here)."""
    return [README, *sorted(DOCS.glob("**/*.md"))]


def page(name: str) -> str:
    """The text of one page of the manual: `page("rewards")` is docs/rewards.md."""
    return (DOCS / f"{name}.md").read_text(encoding="utf-8")


# Appended to every training command run for real: a couple of optimizer steps.
STEPS = ("train.max_steps=2",)


@dataclass(frozen=True)
class Command:
    text: str
    line: int  # where its block starts in its page
    section: str
    page: str = "README.md"  # relative to the repository


def commands(readme: Path | None = None) -> list[Command]:
    """The commands of the bash blocks of `readme` (default: every page), in order."""
    if readme is None:
        return [command for path in pages() for command in commands(path)]
    name = str(readme.relative_to(REPO)) if readme.is_relative_to(REPO) else readme.name
    found, section, block, start, lang = [], "", None, 0, ""
    for number, line in enumerate(readme.read_text(encoding="utf-8").splitlines(), 1):
        fence = re.match(r"\s*```(\w*)", line)
        if fence and block is None:
            block, start, lang = [], number, fence.group(1)
        elif fence:
            if lang in ("bash", "sh", "shell"):
                found += [Command(text, start, section, name) for text in _block_commands(block)]
            block = None
        elif block is not None:
            block.append(line)
        elif line.startswith("#"):
            section = line.lstrip("#").strip()
    return found


def _block_commands(lines: list[str]) -> list[str]:
    if lines and lines[0].startswith("#!"):  # a script (SLURM): one command, as written
        return ["\n".join(lines).strip()]
    joined = "\n".join(lines).replace("\\\n", " ")
    texts = []
    for line in joined.splitlines():
        line = re.sub(r"\s+#\s.*$", "", line).strip()  # a trailing comment
        if line and not line.startswith("#"):
            texts.append(" ".join(line.split()))
    return texts


@dataclass(frozen=True)
class Run:
    """Run for real in tests/e2e/test_readme_commands.py (slow)."""

    cheap: tuple[str, ...] = STEPS
    # README text -> what replaces it: `{data}` a folder of sample files, `{tmp}` the test's
    # folder (run dirs of earlier commands of the chain live there), `{repo}` this checkout.
    files: dict[str, str] = field(default_factory=dict)
    chain: str = ""  # commands of one chain run in README order, in one test
    # Where it writes: its hydra.run.dir (or a -m sweep's hydra.sweep.dir) under {tmp}, unless
    # the command (after `files`) sets one.
    out: str = ""


@dataclass(frozen=True)
class ByTest:
    """Run for real, as written, by this test."""

    test: str  # "tests/.../test_x.py::test_name"


@dataclass(frozen=True)
class Elsewhere:
    """Cannot run here; checked as far as this machine allows."""

    why: str
    # What the checks of this machine say instead (a substring of validate's message); None
    # when the config passes them (it is not run for another reason).
    machine: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    # Overrides under which the rest of the command runs here for real (slow): the tiny model
    # (and sample data) in place of what needs the hub; `files` and STEPS apply as for Run.
    tiny: tuple[str, ...] = ()


HUB = "needs a download from the hub (no network here)"
NOT_CACHED = "not in the local cache and the hub is unreachable"
DEVICE_BENCH = (
    "runs on a lent GPU machine; checked with `bash -n`, and bench/gpu.py (which gets the "
    "extra arguments) accepts them"
)
# Without the bench extra, vlexp stops on the missing install before it asks lmms-eval's cache.
BENCH_MISSING = (
    "is not in lmms-eval's datasets cache"
    if importlib.util.find_spec("lmms_eval")
    else "needs lmms-eval, which is not installed"
)
BENCH_DATA = (
    "needs the benchmarks' data sets from the hub (no network here) and, for MathVista's "
    "judge, OPENAI_API_KEY"
)
BENCH_CLI = "tests/e2e/test_bench_lmms_eval.py::test_bench_cli_run_dir_to_summary_and_compare"
LF = {"/LLaMA-Factory/data": "{data}/llamafactory"}
TRAIN = {"/data/train.jsonl": "{data}/shapes/train.jsonl"}

REGISTRY: dict[str, Run | ByTest | Elsewhere] = {
    # --- top and Quick start
    "python -m vlexp algo=grpo reward=[think_format,accuracy]": Run(),
    "pip install -e . && python -m vlexp": Elsewhere(
        "installs from the network; `python -m vlexp` itself runs in "
        "tests/e2e/test_default_run.py (train.max_steps=4, the console and run dir checked) "
        "and for its 150 steps in tests/e2e/test_rl_experiments.py::"
        "test_grpo_raises_the_reward_of_the_warmed_tiny_model (slow: the reward rises)"
    ),
    "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu": Elsewhere(
        "installs from the network (download.pytorch.org)"
    ),
    'pip install -e ".[dev,bench]" && python -m pytest': Elsewhere(
        "installs from the network, then runs the whole suite, fast and slow (.ci/run runs "
        "it on every landing)"
    ),
    "python -m vlexp.evaluate run=outputs/2026-11-26/03-43-47": Run(
        files={"outputs/2026-11-26/03-43-47": "{tmp}/quick"},
        chain="quickstart",
        cheap=("eval.limit=8",),
    ),
    "mkdocs build --strict --site-dir /tmp/vlexp-site": ByTest(
        "tests/unit/test_docs_site.py::test_the_manual_builds_strict"
    ),
    # --- Data
    "python -m vlexp algo=sft data=jsonl data.dataset_info=/LLaMA-Factory/data "
    "data.train=mllm_demo": Run(files=LF, cheap=(*STEPS, "train.per_device_train_batch_size=2")),
    "python -m vlexp algo=dpo data=jsonl data.dataset_info=/LLaMA-Factory/data "
    "data.train=dpo_en_demo": Run(files=LF, cheap=(*STEPS, "train.per_device_train_batch_size=2")),
    "python -m vlexp algo=dpo data=jsonl data.train=/data/dpo.jsonl": Run(
        files={"/data/dpo.jsonl": "{data}/swift/dpo.jsonl"},
        cheap=(*STEPS, "train.per_device_train_batch_size=2"),
    ),
    "python -m vlexp algo=grpo reward=[think_format,accuracy] data=jsonl "
    "data.train=/data/grpo.jsonl": Run(
        files={"/data/grpo.jsonl": "{data}/swift/grpo.jsonl"},
        cheap=(*STEPS, "train.per_device_train_batch_size=4"),
    ),
    "python -m vlexp algo=sft data=jsonl data.train=/data/annotations.json "
    "data.image_root=/data": Run(
        files={
            "/data/annotations.json": "{data}/qwen_vl/annotations.json",
            "/data": "{data}/qwen_vl",
        },
        cheap=(*STEPS, "train.per_device_train_batch_size=2"),
    ),
    "python -m vlexp algo=grpo reward=iou data=jsonl data.train=/data/rec.jsonl "
    "data.image_root=/data/coco": Run(
        files={"/data/rec.jsonl": "{data}/vlm_r1/rec.jsonl", "/data/coco": "{data}/vlm_r1"},
        cheap=(*STEPS, "train.per_device_train_batch_size=4"),
    ),
    "python -m vlexp algo=grpo reward=accuracy data=jsonl "
    "data.train=/data/superclevr_test200_counting_problems.jsonl": Run(
        files={"/data/": "{data}/r1v/"}, cheap=(*STEPS, "train.per_device_train_batch_size=4")
    ),
    "python -m vlexp algo=grpo reward=[think_format,accuracy] data=hf "
    "data.name=lmms-lab/multimodal-open-r1-8k-verified": Elsewhere(
        f"{HUB}: the data set; its record form (open-r1-multimodal) trains in "
        "tests/e2e/test_peer_formats.py"
    ),
    "python -m vlexp algo=grpo reward=accuracy data=hf data.name=hiyouga/geometry3k "
    "data.eval_split=test": Elsewhere(
        f"{HUB}: the data set; EasyR1's geometry3k rows train in "
        "tests/e2e/test_peer_formats.py::test_easyr1_rows_train_with_grpo_and_each_reward_gets_its_own_answer"
    ),
    "python -m vlexp algo=sft data=hf data.name=HuggingFaceH4/llava-instruct-mix-vsft "
    "\"data.split='train[:2000]'\"": Run(
        # The hub set's rows, in its own parquet form (tests/peer_data.py), read as it would be.
        files={
            "HuggingFaceH4/llava-instruct-mix-vsft": (
                "parquet data.data_files={data}/trl_llava/train-00000-of-00001.parquet"
            )
        },
        cheap=(*STEPS, "train.per_device_train_batch_size=2"),
    ),
    "python -m vlexp algo=dpo data=hf data.name=HuggingFaceH4/rlaif-v_formatted "
    "\"data.split='train[:2000]'\"": Elsewhere(f"{HUB}: the data set"),
    "python -m vlexp algo=sft data=hf data.name=parquet data.data_files=/data/train.parquet "
    '"data.columns={question: prefix, answer: suffix, img: image}"': Run(
        files={"/data/train.parquet": "{data}/train.parquet"},
        cheap=(*STEPS, "train.per_device_train_batch_size=2"),
    ),
    # --- Checking data
    "python -m vlexp.check_data data=jsonl data.train=/data/train.jsonl "
    "data.eval=/data/eval.jsonl algo=dpo": Run(files={"/data/": "{data}/shapes/"}, cheap=()),
    "python -m vlexp.check_data data=jsonl data.train=/data/mllm_demo.json algo=sft --show 2": Run(
        files={"/data/": "{data}/llamafactory/"}, cheap=()
    ),
    # --- Agentic RL (README, docs/agentic.md)
    "python -m vlexp env=zoom data=shapes_zoom train.max_steps=6": Run(
        cheap=(*STEPS, "train.per_device_train_batch_size=4")
    ),
    "python -m vlexp env=zoom data=shapes_zoom train.max_steps=6 model=tiny_qwen3_vl": Run(
        cheap=(*STEPS, "train.per_device_train_batch_size=4")
    ),
    "python -m vlexp.check_data env=zoom data=shapes_zoom": Run(cheap=()),
    "python -m vlexp.check_data env=zoom data=shapes_zoom --show 1": Run(cheap=()),
    # Builds tiny://qwen2_5_vl+tools on first use (minutes); tests/e2e/test_tool_learning.py too.
    "python -m vlexp model=tiny_tools env=zoom data=shapes_zoom env.max_tool_calls=4 "
    "train.max_steps=6": Run(cheap=(*STEPS, "train.per_device_train_batch_size=4")),
    # --- Algorithms
    "python -m vlexp algo=sapo reward=[think_format,accuracy]": Run(),
    "python -m vlexp algo=kto": Run(),
    "python -m vlexp algo=online_dpo train.per_device_train_batch_size=4": Run(),
    "python -m vlexp algo=distill teacher.name_or_path=outputs/DATE/TIME": Run(
        files={"outputs/DATE/TIME": "{tmp}/sft"}, chain="teacher"
    ),
    "python -m vlexp algo=dapo reward=[think_format,accuracy,length]": Run(),
    "python -m vlexp algo=gspo algo.args.num_iterations=2": Run(),
    "python -m vlexp algo=grpo algo.args.top_entropy_quantile=0.2": Run(),
    "python -m vlexp algo=sft data=jsonl data.train=/data/train.jsonl memory=[lora,grad_ckpt]": Run(
        files=TRAIN
    ),
    "python -m vlexp algo=dpo 'algo.args.loss_type=[sigmoid,sft]' "
    "'algo.args.loss_weights=[1.0,0.2]'": Run(),
    "python -m vlexp algo=reward_model train.max_steps=200": Run(chain="ppo", out="rm"),
    "python -m vlexp algo=reward_model data=jsonl data.train=pairs.jsonl memory=lora": Run(
        files={"pairs.jsonl": "{data}/shapes/train.jsonl"}
    ),
    "python -m vlexp algo=ppo reward=[think_format,accuracy]": Run(),
    "python -m vlexp algo=ppo reward=[model,think_format] reward.funcs.model.path=RM_RUN "
    "algo.args.critic_init=RM_RUN model.name_or_path=SFT_RUN/final memory=lora": Run(
        files={"RM_RUN": "{tmp}/rm", "SFT_RUN": "{tmp}/sft"}, chain="ppo"
    ),
    # --- Rewards
    "python -m vlexp reward=[think_format,accuracy] reward.weights.accuracy=2.0": Run(),
    "PYTHONPATH=. python -m vlexp hydra.searchpath=[file://$PWD/myconf] "
    "reward=[think_format,accuracy,short_answer]": Run(chain="own_reward"),
    # --- Logging
    "python -m vlexp logger=wandb logger.project=my-vlm-rl logger.entity=my-team": Run(
        cheap=(*STEPS, "logger.mode=offline")
    ),
    # --- Sweeps and comparing
    "python -m vlexp -m algo.args.beta=0.0,0.04 reward=think_format,accuracy": Run(
        chain="sweep", files={}, cheap=("train.max_steps=1",), out="multirun"
    ),
    "python -m vlexp -m experiment=optuna_shapes hydra.sweeper.n_trials=16": Run(
        cheap=("hydra.sweeper.n_trials=2", "train.max_steps=2")
    ),
    "python -m vlexp -m hydra/sweeper=optuna_reward 'algo.args.beta=interval(0.0,0.1)'": Run(
        cheap=("hydra.sweeper.n_trials=2", "train.max_steps=2")
    ),
    "python -m vlexp -m hydra/launcher=local_parallel hydra.launcher.n_jobs=2 "
    "algo.args.beta=0.0,0.04": Run(),
    "python -m vlexp -m hydra/launcher=slurm hydra.launcher.partition=gpu "
    "hydra.launcher.account=my-acct model=qwen2_5_vl_7b memory=[lora,zero3] launcher=accelerate "
    "launcher.num_processes=8 algo.args.beta=0.0,0.04 reward=think_format,accuracy": Elsewhere(
        "submits to SLURM (no cluster here) 8-GPU jobs of Qwen2.5-VL-7B; the launcher composes",
        machine=NOT_CACHED,
    ),
    "python -m vlexp.compare multirun/2026-11-22/10-00-00": Run(
        chain="sweep", files={"multirun/2026-11-22/10-00-00": "{tmp}/multirun"}, cheap=()
    ),
    "python -m vlexp.compare outputs/2026-11-22/10-00-00 outputs/2026-11-22/11-30-00 "
    "--out cmp/": Run(
        chain="sweep",
        files={
            "outputs/2026-11-22/10-00-00": "{tmp}/multirun/0",
            "outputs/2026-11-22/11-30-00": "{tmp}/multirun/1",
            "cmp/": "{tmp}/cmp/",
        },
        cheap=(),
    ),
    "python -m vlexp.compare base outputs/2026-11-22/10-00-00": ByTest(
        "tests/e2e/test_readme_commands.py::test_readme_evaluate_then_compare_with_the_base_model"
    ),
    # --- Evaluation
    "python -m vlexp.evaluate model=tiny data=shapes": ByTest(
        "tests/e2e/test_evaluate.py::test_the_readme_recipe_train_then_evaluate_beats_the_base_model"
    ),
    "python -m vlexp algo=sft train.max_steps=40 train.learning_rate=3e-3 "
    "train.save_steps=20": ByTest(
        "tests/e2e/test_evaluate.py::test_the_readme_recipe_train_then_evaluate_beats_the_base_model"
    ),
    "python -m vlexp.evaluate run=outputs/2026-11-22/00-10-00": ByTest(
        "tests/e2e/test_evaluate.py::test_the_readme_recipe_train_then_evaluate_beats_the_base_model"
    ),
    "python -m vlexp.evaluate run=outputs/2026-11-22/00-10-00/checkpoint-20 eval=pass_at_k": ByTest(
        "tests/e2e/test_evaluate.py::test_the_readme_recipe_train_then_evaluate_beats_the_base_model"
    ),
    "python -m vlexp algo=sft train.eval_steps=20 eval.limit=64": Run(
        cheap=("train.max_steps=2", "train.eval_steps=2", "eval.limit=4")
    ),
    # --- Experiments
    "python -m vlexp experiment=shapes_grpo": Run(),
    "python -m vlexp experiment=docparse_sft data.train=/data/docs/train.jsonl": Elsewhere(
        "Qwen2.5-VL-3B: " + HUB + "; the preset runs on the tiny model (slow)",
        machine=NOT_CACHED,
        files={"/data/docs/": "{data}/shapes/"},
        tiny=("model=tiny",),
    ),
    "python -m vlexp experiment=rlaif_v_dpo": Elsewhere(
        "Qwen2.5-VL-3B and HuggingFaceH4/rlaif-v_formatted: "
        + HUB
        + "; the preset runs on the tiny model and shapes pairs (slow)",
        machine=NOT_CACHED,
        tiny=("model=tiny", "data=shapes"),
    ),
    "python -m vlexp experiment=r1v_clevr_grpo "
    "data.train=/data/clevr_cogen_a_train/train.jsonl": Elsewhere(
        "Qwen2-VL-2B: " + HUB + "; the preset runs on the tiny model (slow; 32-token completions)",
        machine=NOT_CACHED,
        files={"/data/clevr_cogen_a_train/": "{data}/shapes/"},
        tiny=("model=tiny", "algo.args.max_completion_length=32"),
    ),
    "python -m vlexp experiment=cls_rl_dtd data.train=/data/dtd_4shot/train.jsonl": Elsewhere(
        "Qwen2-VL-2B: " + HUB + "; the preset runs on the tiny model with local classification "
        "data in tests/e2e/test_rl_experiments.py::"
        "test_cls_rl_dtd_preset_runs_on_local_classification_data",
        machine=NOT_CACHED,
        files={"/data/dtd_4shot/": "{data}/shapes/"},
    ),
    "python -m vlexp -m experiment=geometry3k_rl": Elsewhere(
        f"Qwen2.5-VL-7B and hiyouga/geometry3k: {HUB}, and a GPU; the four-algorithm sweep "
        "runs on the tiny model and EasyR1's geometry3k rows (slow; 32-token completions)",
        machine=NOT_CACHED,
        tiny=(
            "model=tiny",
            "data=jsonl",
            "data.train={data}/easyr1/geometry3k.jsonl",
            "train.per_device_train_batch_size=8",
            "algo.args.max_completion_length=32",
            "train.max_steps=1",
        ),
    ),
    # --- Multi-GPU
    "python -m vlexp memory=zero3 launcher=accelerate launcher.num_processes=8": Elsewhere(
        "8 processes (8 GPUs); 2-rank ZeRO-3 runs on CPU in tests/distributed/test_zero.py "
        "(slow); the accelerate command it would start is checked here"
    ),
    "python -m vlexp memory=[lora,grad_ckpt,zero3] launcher=accelerate "
    "launcher.num_processes=8": Elsewhere(
        "8 processes (8 GPUs); 2-rank ZeRO-3 runs on CPU in tests/distributed/test_zero.py "
        "(slow); the accelerate command it would start is checked here"
    ),
    "python -m vlexp -m algo.args.beta=0.0,0.04 launcher=accelerate launcher.num_processes=2": ByTest(
        "tests/distributed/test_multirun.py::test_sweep_of_two_jobs_with_two_ranks_each"
    ),
    # --- Resume
    "python -m vlexp ... hydra.run.dir=outputs/exp1": Run(
        chain="resume",
        files={"...": "train.save_steps=1", "outputs/exp1": "{tmp}/exp1"},
        cheap=("train.max_steps=2",),
    ),
    "python -m vlexp ... hydra.run.dir=outputs/exp1 resume=auto": Run(
        chain="resume",
        files={"...": "train.save_steps=1", "outputs/exp1": "{tmp}/exp1"},
        cheap=("train.max_steps=3",),
    ),
    "python -m vlexp ... resume=outputs/exp1/checkpoint-200": Run(
        chain="resume",
        files={
            "...": "train.save_steps=1",
            "outputs/exp1/checkpoint-200": "{tmp}/exp1/checkpoint-2",
        },
        cheap=("train.max_steps=3",),
        out="exp2",
    ),
    # --- SLURM
    "#!/bin/bash\n#SBATCH --nodes=2 --ntasks-per-node=1 --gpus-per-node=8 --cpus-per-task=64\n"
    "#SBATCH --time=24:00:00 --signal=TERM@120 --requeue\n"
    'export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)\n'
    "srun bash -c 'python -m vlexp model=qwen2_5_vl_7b memory=[lora,zero3] \\\n"
    "  launcher=accelerate launcher.num_processes=16 launcher.num_machines=$SLURM_NNODES \\\n"
    "  launcher.machine_rank=$SLURM_NODEID launcher.main_process_ip=$MASTER_ADDR \\\n"
    "  launcher.main_process_port=29500 hydra.run.dir=outputs/slurm-$SLURM_JOB_ID "
    "resume=auto'": Elsewhere(
        "a 2-node SLURM job of 16 GPUs; the script passes `bash -n` and its command composes "
        "with the SLURM variables filled in",
        machine=NOT_CACHED,
    ),
    # --- Memory and speed
    "python -m vlexp.plan model=qwen2_5_vl_7b algo=grpo plan.gpu_mem_gb=80": ByTest(
        "tests/unit/test_readme_commands.py::test_the_readme_plan_prints_what_the_readme_shows"
    ),
    # --- Performance
    "bash bench/fetch_wheels.sh": Elsewhere("downloads wheels from PyPI; checked with `bash -n`"),
    "bash bench/device_run.sh": Elsewhere("runs on a lent GPU machine; checked with `bash -n`"),
    "bash bench/device_run.sh --plan qwen3 --timeout 230": Elsewhere(DEVICE_BENCH),
    "BENCH_BUDGET=500 bash bench/device_run.sh --plan rollout --timeout 200": Elsewhere(
        DEVICE_BENCH
    ),
    # --- GRPO family: DAPO's dynamic sampling
    "python -m vlexp algo=dapo train.max_steps=3": ByTest(
        "tests/unit/test_rollout_dynamic_sampling.py::test_rollout_dapo_command_logs_the_kept_fraction"
    ),
    "python -m vlexp algo=dapo algo.dynamic_sampling.oversample=5": Run(),
    "python -m vlexp algo=dapo algo.dynamic_sampling.enabled=false": Run(),
    # --- Rollouts
    "python -m vlexp rollout=hf_fast memory=lora train.max_steps=4": ByTest(
        "tests/e2e/test_rollout_runs.py::test_rollout_hf_fast_lora_grpo_logs_recompiles"
    ),
    "python -m vlexp model=qwen2_5_vl_3b rollout=hf_fast memory=grad_ckpt": Elsewhere(
        f"Qwen2.5-VL-3B: {HUB}; compiled decoding needs a GPU", machine=NOT_CACHED
    ),
    "python -m vlexp model=qwen2_5_vl_3b rollout=vllm_colocate": Elsewhere(
        f"Qwen2.5-VL-3B: {HUB}, and vLLM on a GPU", machine="vllm"
    ),
    "python -m vlexp model=qwen2_5_vl_3b rollout=vllm_colocate "
    "rollout.vllm.gpu_memory_utilization=0.4": Elsewhere(
        f"Qwen2.5-VL-3B: {HUB}, and vLLM on a GPU", machine="vllm"
    ),
    "CUDA_VISIBLE_DEVICES=1 trl vllm-serve --model Qwen/Qwen2.5-VL-3B-Instruct --port 8000 &": Elsewhere(
        "starts TRL's vLLM server: needs vLLM, a GPU and the hub"
    ),
    "CUDA_VISIBLE_DEVICES=0 python -m vlexp model=qwen2_5_vl_3b rollout=vllm_server": Elsewhere(
        f"Qwen2.5-VL-3B: {HUB}, and a vLLM server on a GPU", machine="vllm"
    ),
    "python -m vlexp model=qwen2_5_vl_3b rollout=vllm_server "
    "rollout.vllm.base_url=http://gpu-node-7:8000": Elsewhere(
        f"Qwen2.5-VL-3B: {HUB}, and a vLLM server on a GPU", machine="vllm"
    ),
    'pip install -e ".[gpu]"': Elsewhere(
        "installs the GPU extra (vLLM, bitsandbytes, Liger): CUDA wheels"
    ),
    # --- Development
    'pip install -e ".[dev,bench]"': Elsewhere(
        "installs from the network; both extras are declared (.ci/run installs them)"
    ),
    'python -m pytest -m "not slow"': Elsewhere(
        "the fast set (part of what CI runs); the `slow` marker is registered in pyproject.toml"
    ),
    "python -m pytest -m slow": Elsewhere(
        "the slow set (part of what CI runs); the `slow` marker is registered in pyproject.toml"
    ),
    "python scripts/support_table.py --write": ByTest(
        "tests/unit/test_readme_support_table.py::test_the_script_rewrites_a_stale_table"
    ),
    "ruff check src tests && ruff format --check src tests": ByTest(
        "tests/unit/test_readme_commands.py::test_the_readme_lint_command_passes"
    ),
    # --- Evaluation: benchmarks through lmms-eval (docs/benchmarks.md)
    'pip install -e ".[bench]"': Elsewhere(
        "installs from the network (lmms-eval and its dependencies); the extra is declared"
    ),
    "python -m vlexp.evaluate run=outputs/2026-11-22/00-10-00 "
    "bench=[mathvista_testmini,mmmu_val,chartqa]": Elsewhere(
        f"{BENCH_DATA}; the same command on local tasks runs in {BENCH_CLI}"
    ),
    "python -m vlexp.compare outputs/2026-11-22/10-00-00 outputs/2026-11-22/11-30-00": Elsewhere(
        "compares run dirs scored on hub benchmarks; benchmark columns are built in "
        "tests/unit/test_bench_config.py::test_bench_scores_become_compare_columns and from a "
        f"real evaluation in {BENCH_CLI}"
    ),
    "python -m vlexp bench=[mmmu_val] bench.limit=50 train.eval_steps=100": Elsewhere(
        f"{BENCH_DATA}; composes and passes the config checks here",
        machine=BENCH_MISSING,
    ),
    "export LMMS_EVAL_DATASETS_CACHE=/shared/lmms-eval-datasets": Elsewhere(
        "sets a cluster's shared folder; the variable is read by "
        "tests/unit/test_bench_config.py::test_bench_offline_finds_what_datasets_itself_would_load"
    ),
    "python -m vlexp.evaluate model=tiny bench=[mathvista_testmini,mmmu_val] bench.limit=1": (
        Elsewhere(f"{BENCH_DATA}; the same path on local tasks runs in {BENCH_CLI}")
    ),
    "HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 python -m vlexp.evaluate "
    "run=outputs/2026-11-22/00-10-00 bench=[mathvista_testmini,mmmu_val]": Elsewhere(
        f"{BENCH_DATA} (downloaded beforehand); the offline stop is tested in "
        "tests/unit/test_bench_config.py::"
        "test_bench_offline_and_not_cached_stops_in_one_line_before_loading"
    ),
}


def module_and_args(text: str) -> tuple[str, list[str]] | None:
    """(`vlexp...` module, its arguments) of a `python -m vlexp...` command, else None."""
    words = shlex.split(text)
    for at, word in enumerate(words[:-1]):
        if word == "-m" and words[at - 1 : at] == ["python"] and words[at + 1].startswith("vlexp"):
            return words[at + 1], words[at + 2 :]
    return None


def fill(text: str, files: dict[str, str], places: dict[str, str]) -> str:
    """The command with its README placeholders replaced (`{data}`, `{tmp}` filled in), in one
    pass, so a replacement is never replaced again."""
    if not files:
        return text
    pattern = "|".join(re.escape(p) for p in sorted(files, key=len, reverse=True))
    return re.sub(pattern, lambda m: files[m.group(0)].format(**places), text)


def blocks(lang: str, readme: Path | None = None) -> list[str]:
    """The text of every ```LANG block of `readme` (default: every page; `""`: the untyped
    ones, outputs)."""
    if readme is None:
        return [text for path in pages() for text in blocks(lang, path)]
    return [text for kind, text in fenced(readme) if kind == lang]


def fenced(readme: Path) -> list[tuple[str, str]]:
    """(language, text) of every fenced block of `readme`, in order."""
    found, block, kind = [], None, ""
    for line in readme.read_text(encoding="utf-8").splitlines():
        fence = re.match(r"\s*```(\w*)", line)
        if fence and block is None:
            block, kind = [], fence.group(1)
        elif fence:
            found.append((kind, "\n".join(block) + "\n"))
            block = None
        elif block is not None:
            block.append(line)
    return found


def output_after(command: str) -> str:
    """What a page shows `command` printing: the untyped or ```text block right after the
    ```bash block that holds it."""
    for path in pages():
        shown = fenced(path)
        for (kind, text), (next_kind, output) in zip(shown, shown[1:], strict=False):
            holds = kind == "bash" and command in _block_commands(text.splitlines())
            if holds and next_kind in ("", "text"):
                return output
    raise LookupError(f"no page shows what {command!r} prints")


def own_reward_files(folder: Path) -> Path:
    """The README's "Your own reward" example, as it shows it: `my_rewards.py` and
    `myconf/reward/short_answer.yaml` in `folder`."""
    code = next(b for b in blocks("python") if "def short_answer" in b)
    conf = next(b for b in blocks("yaml") if "short_answer:" in b)
    (folder / "myconf" / "reward").mkdir(parents=True, exist_ok=True)
    (folder / "my_rewards.py").write_text(code)
    (folder / "myconf" / "reward" / "short_answer.yaml").write_text(conf)
    return folder
