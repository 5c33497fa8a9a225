"""Progress of a long command: a bar redrawn in place on a terminal; elsewhere (a log) a line
now and then, so a log is not flooded and a terminal is not scrolled."""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO


def progress(stream: TextIO, unit: str = "messages") -> Callable[[int, int], None]:
    last = [-1]

    def show(done: int, total: int) -> None:
        if stream.isatty():
            width = 40
            filled = width * done // total if total else width
            stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        elif done >= total or done - last[0] >= 1000:
            stream.write(f"{done}/{total} {unit}\n")
        else:
            return
        last[0] = done
        stream.flush()

    return show
