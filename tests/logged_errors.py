"""A logging handler that keeps every ERROR record: the fuzz tests assert that nothing is logged as one."""

from __future__ import annotations

import logging


class Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(self.format(record))
