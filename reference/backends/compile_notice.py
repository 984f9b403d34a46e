"""A note on stderr while Numba compiles: the first run of a kernel can take half a minute before
its first output, and a command that sits silent that long looks hung."""

from __future__ import annotations

import sys
import time


class CompileNotice:
    """Says on stderr when Numba starts compiling, and at the end how long compiling took in all.

    Numba compiles a kernel the first time it meets it with new argument types on this CPU and keeps
    the result on disk, so a first run can spend half a minute before its first output, and a later
    one none. Numba announces a real compile (a cache miss; a cache load announces nothing) as a
    "numba:compile" event, nested once for each kernel compiled inside another, so the outermost
    ones are what this counts. Use it as a context manager; without Numba it does nothing.
    """

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.kernels, self.seconds, self.depth, self.cache = 0, 0.0, 0, None

    def on_start(self, event):
        if self.depth == 0:
            if self.kernels == 0:
                stats = getattr(event.data.get("dispatcher"), "stats", None)
                self.cache = getattr(stats, "cache_path", None)
                self.stream.write(
                    "compiling Numba kernels for this CPU and these input types (once: later runs"
                    f" load them from {self.cache or 'the cache on disk'}; this can take a"
                    " minute)\n"
                )
                self.stream.flush()
            self.started = time.perf_counter()
        self.depth += 1

    def on_end(self, event):
        self.depth -= 1
        if self.depth == 0:
            self.seconds += time.perf_counter() - self.started
            self.kernels += 1

    def __enter__(self):
        try:
            from numba.core import event
        except ImportError:
            self.listener = None
            return self
        notice = self

        class Listener(event.Listener):
            on_start, on_end = staticmethod(notice.on_start), staticmethod(notice.on_end)

        self.listener = Listener()
        event.register("numba:compile", self.listener)
        return self

    def __exit__(self, *exc):
        if self.listener is None:
            return
        from numba.core import event

        event.unregister("numba:compile", self.listener)
        if self.kernels:
            self.stream.write(
                f"compiled {self.kernels} Numba kernel{'s' * (self.kernels > 1)} in"
                f" {self.seconds:.1f}s (later runs load them from the cache)\n"
            )
            self.stream.flush()
