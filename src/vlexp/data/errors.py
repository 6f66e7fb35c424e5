"""The data error every data module raises, in a module that imports nothing of vlexp's.

It lived in `records`, which imports `boxes` and `formats`; their lazy imports of it back made
an import cycle (boxes <-> records <-> formats). `records` still re-exports it.
"""

from __future__ import annotations


class DataError(ValueError):
    """A record or file that cannot be used; the message names where and what to do."""
