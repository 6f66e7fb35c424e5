"""How a vlexp command ends: `python -m vlexp`, `vlexp.worker` and `vlexp.evaluate` run their
`main` through `light_exit`.

When the interpreter exits, CPython clears every module and runs its garbage collector over
all that the libraries still hold (torch, transformers, TRL, datasets: millions of objects),
several times. For the tiny GRPO job of `bench/overhead.py` that took 1.1-1.3 s of a 11 s
run, after the work was done; a plain TRL script pays it too. `light_exit` collects what the
command left behind (so its objects are finalised as usual), then freezes what is still alive
(`gc.freeze`), which the exit-time collections skip. Everything else of a normal exit still
happens: atexit handlers (logging's flush, W&B, `weakref.finalize` of temporary folders),
thread joins, and the deallocation of every object whose last reference goes. What is left
out is the finalisation of reference cycles among objects still alive at exit, which Python
does not promise (`object.__del__`'s note) and which the OS reclaims.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def light_exit(main: Callable[[], T]) -> T:
    """`main()`, then the garbage collector spared its passes over the libraries at exit;
    also when `main` raises or exits (SystemExit)."""
    try:
        return main()
    finally:
        gc.collect()  # the command's own garbage: finalised now, as at any other time
        gc.freeze()  # the rest lives until the process ends: no collection walks it again
