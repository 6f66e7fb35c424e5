"""The reward guard: a reward function that raises is named, with the completion it raised on.

TRL names a reward by its `__name__` (unwrapping `functools.partial`); the guard keeps that
name, so metrics read `rewards/<function name>/mean` as they would without it.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from vlexp import families
from vlexp.config import reward as reward_config
from vlexp.config.reward import ON_ERROR
from vlexp.data.boxes import BoxFrame
from vlexp.data.images import processor_geometry
from vlexp.rewards.answers import completion_text

log = logging.getLogger("vlexp")

SHOWN_CHARS = 300  # how much of an offending completion an error message quotes


class RewardError(RuntimeError):
    """A reward function raised; the message names it and quotes the completion."""


class RewardTimeout(TimeoutError):
    """A reward call ran past `reward.timeout_s` and was abandoned."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"did not return within reward.timeout_s={seconds:g} s")
        self.seconds = seconds


def call_with_deadline(func: Callable, seconds: float | None, *args: Any, **kwargs: Any) -> Any:
    """`func(*args, **kwargs)`, or RewardTimeout after `seconds` (None: no deadline).

    The call runs in a daemon thread; a Python thread cannot be killed, so one that overruns
    is sent an asynchronous RewardTimeout (which stops pure-Python loops such as a stuck
    sympy simplification at their next bytecode) and abandoned. A call blocked inside C code
    keeps its thread until it returns, but no longer holds up training.
    """
    if not seconds:
        return func(*args, **kwargs)
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = func(*args, **kwargs)
        except BaseException as err:  # handed to the caller's thread
            box["error"] = err

    worker = threading.Thread(target=run, name="vlexp-reward", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        _interrupt(worker)
        raise RewardTimeout(seconds)
    if "error" in box:
        raise box["error"]
    return box["value"]


def _interrupt(thread: threading.Thread) -> None:
    import ctypes

    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread.ident), ctypes.py_object(RewardTimeout)
    )


def qualified_name(func: Callable) -> str:
    """`module.function` of a reward, through `functools.partial` and callable objects."""
    while isinstance(func, functools.partial):
        func = func.func
    name = getattr(func, "__qualname__", None) or type(func).__qualname__
    return f"{getattr(func, '__module__', None) or type(func).__module__}.{name}"


def reward_name(func: Callable) -> str:
    """The name TRL logs a reward under: the function's, through `functools.partial`."""
    while isinstance(func, functools.partial):
        func = func.func
    return getattr(func, "__name__", type(func).__name__)


class GuardedReward:
    """Calls a reward function; when it raises, says which function and which completion.

    The batch is scored in one call. Only when that raises are the completions re-scored one
    at a time (list-valued columns sliced to match) to find the offending ones: with
    `on_error="raise"` the first one stops the run with a `RewardError`; with `"zero"` each
    offending completion scores 0.0 and their count per call is logged as
    `rewards/<name>/errors` through TRL's `log_metric` hook.

    A class rather than a closure so the reward stays picklable (TRL may ship reward functions
    to a worker process).
    """

    def __init__(
        self,
        func: Callable,
        name: str | None = None,
        on_error: str = "raise",
        timeout_s: float | None = None,
    ) -> None:
        if on_error not in ON_ERROR:
            raise ValueError(f"reward.on_error must be one of {ON_ERROR}, got {on_error!r}")
        self.func = func
        self.__name__ = name or reward_name(func)
        self.on_error = on_error
        self.timeout_s = float(timeout_s) if timeout_s else None

    def __repr__(self) -> str:
        return (
            f"GuardedReward({self.__name__}={qualified_name(self.func)}, on_error={self.on_error})"
        )

    def __call__(self, completions: list, **kwargs: Any) -> list[float | None]:
        limit = self.timeout_s
        try:
            batch = call_with_deadline(self.func, limit, completions=completions, **kwargs)
            scores, errors = list(batch), 0
        except Exception as batch_error:
            budget = _one_at_a_time(limit)
            results = []
            for index, completion in enumerate(completions):
                try:
                    left = budget()
                    one = _slice(kwargs, index, len(completions))
                    score = call_with_deadline(self.func, left, completions=[completion], **one)
                    results.append(list(score))
                except RewardTimeout:
                    results.append(RewardTimeout(limit))
                except Exception as err:
                    results.append(err)
            scores, errors = self._settle(completions, results, batch_error)
        self._count(kwargs, errors, _timeouts(results if errors else []))
        return scores

    def _settle(self, completions: list, results: list, batch_error: Exception):
        """Scores from one-at-a-time results (a list of scores, or the exception raised)."""
        count = len(completions)
        scores: list[float | None] = []
        errors = 0
        for index, result in enumerate(results):
            if not isinstance(result, Exception):
                scores.extend(result)
            elif self.on_error == "raise":
                raise RewardError(
                    self._message(result, completions[index], index, count)
                ) from result
            else:
                errors += 1
                scores.append(0.0)
                if isinstance(result, RewardTimeout):  # name the function and the completion
                    log.warning(
                        "reward %s (%s) %s, abandoned and scored 0 (reward.on_error=zero)%s",
                        self.__name__,
                        qualified_name(self.func),
                        result,
                        self._shown(completions[index], index, count),
                    )
        if errors == 0 and self.on_error == "raise":
            # Every completion scores alone: the failure depends on the batch as a whole.
            raise RewardError(self._message(batch_error, None, None, count)) from batch_error
        if errors:
            log.warning(
                "reward %s raised on %d of %d completions; scored 0 (reward.on_error=zero)",
                self.__name__,
                errors,
                count,
            )
        return scores, errors

    def _count(self, kwargs: dict[str, Any], errors: int, timeouts: int = 0) -> None:
        if self.on_error == "zero" and callable(kwargs.get("log_metric")):
            kwargs["log_metric"](f"rewards/{self.__name__}/errors", float(errors))
            if self.timeout_s:
                kwargs["log_metric"](f"rewards/{self.__name__}/timeouts", float(timeouts))

    def _shown(self, completion: Any, index: int | None, count: int) -> str:
        if index is None:
            return f"\n  on the batch of {count} completions (each one alone scores fine)"
        text = completion_text(completion)
        cut = f" ... ({len(text)} characters)" if len(text) > SHOWN_CHARS else ""
        return f"\n  on completion {index + 1} of {count}: {text[:SHOWN_CHARS]!r}{cut}"

    def _message(self, err: Exception, completion: Any, index: int | None, count: int) -> str:
        shown = self._shown(completion, index, count)
        if isinstance(err, RewardTimeout):
            return (
                f"reward function '{self.__name__}' ({qualified_name(self.func)}) {err} and "
                f"was abandoned{shown}\nFix the function, raise reward.timeout_s, or set "
                "reward.on_error=zero to score such completions 0 (counted in the metric "
                f"rewards/{self.__name__}/timeouts)."
            )
        where = _where(err, self.func)
        return (
            f"reward function '{self.__name__}' ({qualified_name(self.func)}) raised "
            f"{type(err).__name__}: {err}{where}{shown}\n"
            f"Fix the function or the data, or set reward.on_error=zero to score such "
            f"completions 0 (counted in the metric rewards/{self.__name__}/errors)."
        )


class AsyncGuardedReward(GuardedReward):
    """The same guard for `async def` rewards (e.g. an LLM judge), which TRL awaits."""

    async def __call__(self, completions: list, **kwargs: Any) -> list[float | None]:
        try:
            batch = await self._awaited(self.timeout_s, completions=completions, **kwargs)
            scores, errors = list(batch), 0
        except Exception as batch_error:
            budget = _one_at_a_time(self.timeout_s)
            results = []
            for index, completion in enumerate(completions):
                try:
                    left = budget()
                    one = _slice(kwargs, index, len(completions))
                    results.append(list(await self._awaited(left, completions=[completion], **one)))
                except Exception as err:
                    results.append(err)
            scores, errors = self._settle(completions, results, batch_error)
        self._count(kwargs, errors, _timeouts(results if errors else []))
        return scores

    async def _awaited(self, seconds: float | None, **kwargs: Any) -> Any:
        import asyncio

        if not seconds:
            return await self.func(**kwargs)
        try:
            return await asyncio.wait_for(self.func(**kwargs), seconds)
        except (TimeoutError, RewardTimeout):
            raise RewardTimeout(self.timeout_s) from None


def guarded(rewards: reward_config.Rewards, box_frame: Any = None) -> dict[str, GuardedReward]:
    """Reward name -> its function built from `rewards` (`vlexp.config.reward.of`, the run
    plan's `rewards`) and guarded by `reward.on_error`, in `reward.funcs` order (the order TRL
    receives them).

    Rewards with a `box_frame` parameter that the config leaves unset get `box_frame` (the
    model family's frame, `vlexp.runplan.RunPlan.box_frame`) when the gold boxes are still in
    the record's pixels (`data.boxes.gold=false`, or rows that never went through vlexp's data
    loader): they map the answer onto those pixels. `box_frame` may be a function returning
    the frame, asked only then. Without a frame such a reward stops here (ValueError): box
    rewards never score in a guessed frame.
    """
    from hydra.utils import instantiate

    built = {}
    for name, node in rewards.funcs.items():
        func = instantiate(node)
        limit = rewards.deadline(qualified_name(func))
        if "box_frame" not in node and _takes_box_frame(node) and not rewards.gold_rescaled:
            frame = box_frame() if callable(box_frame) else box_frame
            if frame is None:
                raise ValueError(
                    f"reward {name} scores boxes in the model family's frame, and none was "
                    "given (the run plan's box_frame): boxes are never scored in a guessed frame"
                )
            # Bound after instantiate: Hydra would turn the dataclass into a DictConfig.
            func = functools.partial(func, box_frame=frame)
        built[name] = guard(func, on_error=rewards.on_error, timeout_s=limit)
    return built


def _takes_box_frame(node: Any) -> bool:
    try:
        target = reward_config.locate(node.get("_target_"))
        return node.get("_partial_") and "box_frame" in inspect.signature(target).parameters
    except Exception:
        return False  # validate.rewards reports a target that does not import


def processor_box_frame(model: Any, processor: Any) -> Any:
    """The box frame of a loaded model, with the resize its processor applies; None when no
    family claims the model (box rewards that need a frame then stop, `guarded`)."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    try:
        family = families.of_model_type(model_type) if model_type else None
    except families.UnknownFamily:
        return None
    if family is None:
        return None
    if family.box_frame != "pixels":
        return BoxFrame(family.box_frame)
    return BoxFrame(family.box_frame, *processor_geometry(processor, family))


def guard(
    func: Callable, name: str | None = None, on_error: str = "raise", timeout_s: float | None = None
) -> GuardedReward:
    """`func` guarded, async or not as `func` is (TRL runs async rewards concurrently)."""
    inner = func
    while isinstance(inner, functools.partial):
        inner = inner.func
    # An `async def __call__` object is async too (inspect alone misses it).
    call = type(inner).__call__ if not inspect.isroutine(inner) else inner
    is_async = inspect.iscoroutinefunction(inner) or inspect.iscoroutinefunction(call)
    cls = AsyncGuardedReward if is_async else GuardedReward
    return cls(func, name=name, on_error=on_error, timeout_s=timeout_s)


def _timeouts(results: list) -> int:
    return sum(isinstance(result, RewardTimeout) for result in results)


def _one_at_a_time(limit: float | None) -> Callable[[], float | None]:
    """Deadlines for re-scoring a failed batch one completion at a time: each call within
    `limit`, all of them within two more, so a reward that hangs on every completion costs
    three deadlines, not one per completion. Each call of the result gives the seconds the
    next completion may take (None: no deadline), or raises RewardTimeout when none is left."""
    end = time.monotonic() + 2 * limit if limit else None

    def left() -> float | None:
        if end is None:
            return None
        remaining = min(limit, end - time.monotonic())
        if remaining <= 0:
            raise RewardTimeout(limit)
        return remaining

    return left


def _slice(kwargs: dict[str, Any], index: int, count: int) -> dict[str, Any]:
    """One completion's share of the reward kwargs: columns are lists aligned with the
    completions; trainer_state, log_metric, ... pass through whole."""
    return {
        key: value[index : index + 1] if isinstance(value, list) and len(value) == count else value
        for key, value in kwargs.items()
    }


def _where(err: Exception, func: Callable) -> str:
    """The line of the reward's own file that raised, and the innermost frame if elsewhere."""
    frames = traceback.extract_tb(err.__traceback__)
    if not frames:
        return ""
    while isinstance(func, functools.partial):
        func = func.func
    try:
        own_file = inspect.getsourcefile(func)
    except TypeError:
        own_file = None
    own = [f for f in frames if own_file and f.filename == own_file] or frames[-1:]
    text = f"\n  at {own[-1].filename}:{own[-1].lineno} in {own[-1].name}"
    if own[-1] is not frames[-1]:
        text += f" (raised in {frames[-1].filename}:{frames[-1].lineno})"
    return text
