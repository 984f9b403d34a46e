"""Skips and xfails files: which checks not to run, and which are expected to fail.

Format, one entry per line (blank lines and lines starting with # are ignored)::

    <check id or fnmatch pattern>    # reason
    mpnet/tf/base-3d-mask            # our TF port has no 3D masks
    property/mpt/hf/*                # properties not wired up yet

An entry that matches no check is reported as stale (a warning), so the files do not rot.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field


@dataclass
class Selection:
    path: str
    entries: dict = field(default_factory=dict)  # pattern -> reason
    used: set = field(default_factory=set)

    @classmethod
    def load(cls, path):
        if path is None:
            return cls("")
        entries = {}
        with open(path, encoding="utf-8") as f:
            for line in f:
                text = line.strip()
                if not text or text.startswith("#"):
                    continue
                pattern, _, reason = text.partition("#")
                entries[pattern.strip()] = reason.strip() or "no reason given"
        return cls(path, entries)

    def match(self, check_id):
        """The reason if check_id matches an entry, else None."""
        for pattern, reason in self.entries.items():
            if pattern == check_id or fnmatch.fnmatchcase(check_id, pattern):
                self.used.add(pattern)
                return reason
        return None

    def stale(self):
        return [p for p in self.entries if p not in self.used]
