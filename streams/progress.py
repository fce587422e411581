"""A progress line on stderr for the command-line tools (simulate, backtest)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """A progress line on stderr: redrawn in place on a terminal, one line per 10 % otherwise."""

    def __init__(
        self, label: str, total: int, stream: TextIO | None = None, interval: float = 0.2
    ) -> None:
        self.label = label
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.interval = interval
        self._drawn = -interval
        self._reported = -1  # tens of percent last reported, off a terminal
        self._width = 0

    def update(self, done: int, note: str = "") -> None:
        """Report `done` of `total`; `note` says what that amounts to."""
        percent = 100 if self.total <= 0 else min(100, done * 100 // self.total)
        if self.tty:
            now = time.monotonic()
            if now - self._drawn < self.interval and done < self.total:
                return
            self._drawn = now
            filled = percent // 5
            text = f"{self.label}: [{'#' * filled}{'.' * (20 - filled)}] {percent:3d}% {note}"
            self.stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
            self.stream.flush()
        elif percent // 10 > self._reported:
            self._reported = percent // 10
            print(f"{self.label}: {percent:3d}% {note}", file=self.stream)

    def message(self, text: str) -> None:
        """Print a line of its own above the progress line (which the next update redraws)."""
        if self.tty and self._width:
            self.stream.write("\r" + text.ljust(self._width) + "\n")
            self._width = 0
            self._drawn = -self.interval
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the line drawn in place, so that what follows starts on a line of its own."""
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0
