"""A progress bar for long management commands, drawn on stderr only when it is a terminal
(so cron logs and pipes stay clean)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    def __init__(
        self,
        total: int | None,
        label: str,
        stream: TextIO | None = None,
        width: int = 30,
        unit: str = "",
    ) -> None:
        # None: not known (the count would cost too much); the bar shows the count alone.
        self.total = max(total, 0) if total is not None else None
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self.unit = f" {unit}" if unit else ""
        self.enabled = self.stream.isatty()
        self.started = time.monotonic()
        self._last_draw = 0.0

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if (self.total is None or done < self.total) and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        rate = done / (now - self.started) if now > self.started else 0.0
        if self.total is None:
            self.stream.write(f"\r{self.label}: {done:,}{self.unit} ({rate:,.0f}{self.unit}/s)")
            self.stream.flush()
            return
        fraction = done / self.total if self.total else 1.0
        filled = int(self.width * fraction)
        self.stream.write(
            f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] "
            f"{done:,}/{self.total:,}{self.unit} ({fraction:.0%}, {rate:,.0f}{self.unit}/s)"
        )
        self.stream.flush()

    def finish(self, done: int | None = None) -> None:
        if self.enabled:
            self.update(self.total if self.total is not None else done or 0)
            self.stream.write("\n")
            self.stream.flush()
