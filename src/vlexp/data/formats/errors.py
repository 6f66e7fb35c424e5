"""The error a format reader raises for one record (the caller adds `file:line`)."""

from __future__ import annotations


class FormatError(ValueError):
    """A record its format reader cannot turn into vlexp's form: field, short reason, detail."""

    def __init__(self, field: str, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.field, self.reason, self.detail = field, reason, detail
