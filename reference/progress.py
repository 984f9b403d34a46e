"""A dependency-free progress bar on stderr, drawn only when stderr is a terminal (logs stay
clean)."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total, label, stream=None, force=False):
        self.total, self.label, self.done = max(total, 1), label, 0
        self.stream = stream or sys.stderr
        self.enabled = force or getattr(self.stream, "isatty", lambda: False)()
        self.started = time.perf_counter()

    def update(self, step=1):
        self.done = min(self.done + step, self.total)
        if self.enabled:
            width = 30
            filled = int(width * self.done / self.total)
            rate = self.done / max(time.perf_counter() - self.started, 1e-9)
            self.stream.write(
                f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
                f"({rate:.1f}/s)"
            )
            self.stream.flush()

    def close(self):
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
