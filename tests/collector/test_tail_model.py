"""Model-based test of the file tail: random schedules of writes, rewrites, truncations, rotations and
replacements run against the real `FileTail` on real files, checked against an oracle that knows every
version the file held (docs/live-collection.md, "A file that changes under the tail")."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from katib_metrics.collector.sources.tail import FileTail

# Few distinct lines, of a few lengths, so that equal lines meet at equal offsets (what dedup decides on).
LINE = st.sampled_from([b"a=1", b"a=2", b"bb=3", b"a=1 b=2", b"c=44", b""])
TEXT = st.tuples(st.lists(LINE, max_size=6), st.sampled_from([b"", b"a=1", b"z=9"])).map(
    lambda parts: b"".join(line + b"\n" for line in parts[0]) + parts[1])

CONFIGS = {
    # every read compares everything read with the file: each version seen is collected in full
    "whole": {"full_check": 1 << 16, "window": 1 << 12, "max_read": 1 << 16},
    "whole, small reads": {"full_check": 1 << 16, "window": 1 << 12, "max_read": 5},
    # only 3-byte windows compared: changes between them are found by flush's whole-file check
    "windows": {"full_check": 0, "window": 3, "max_read": 7},
}


def placed(content: bytes) -> list[tuple[int, bytes]]:
    """The lines of one version with their offsets (an unterminated last line included)."""
    found, at = [], 0
    parts = content.split(b"\n")
    for index, line in enumerate(parts):
        if index < len(parts) - 1 or line:
            found.append((at, line))
        at += len(line) + 1
    return found


def whole_lines(content: bytes) -> list[bytes]:
    return content.split(b"\n")[:-1]


class TailModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="tail-model-"))
        self.path = self.dir / "metrics.log"
        self.versions: list[bytes] = [b""]  # every content the path held, in order
        self.rotated = 0
        self.out: list[bytes] = []
        self.config = "whole"
        self.tail = FileTail(self.path)

    @initialize(config=st.sampled_from(sorted(CONFIGS)))
    def start(self, config: str) -> None:
        self.config = config
        self.tail = FileTail(self.path, **CONFIGS[config])

    def _now(self) -> None:
        self.versions.append(self.path.read_bytes() if self.path.exists() else b"")

    @rule(text=TEXT)
    def append(self, text: bytes) -> None:
        with self.path.open("ab") as out:
            out.write(text)
        self._now()

    @rule(text=TEXT)
    def rewrite_in_place(self, text: bytes) -> None:
        with self.path.open("wb") as out:  # open(path, "w"): same inode, any size
            out.write(text)
        self._now()

    @rule()
    def copytruncate(self) -> None:
        if self.path.exists():
            os.truncate(self.path, 0)
            self._now()

    @rule(text=TEXT)
    def rename_rotation(self, text: bytes) -> None:
        if self.path.exists():
            self.rotated += 1
            os.rename(self.path, self.dir / f"metrics.log.{self.rotated}")
        self.path.write_bytes(text)
        self._now()

    @rule(text=TEXT)
    def replaced_by_another_file(self, text: bytes) -> None:
        fresh = self.dir / "fresh"
        fresh.write_bytes(text)
        os.replace(fresh, self.path)
        self._now()

    def _take(self, block: bytes) -> None:
        assert block.endswith(b"\n")
        self.out.extend(block[:-1].split(b"\n"))

    @rule()
    def read_once(self) -> None:
        if block := self.tail.read():
            self._take(block)

    @rule()
    def drain(self) -> None:
        while block := self.tail.read():
            self._take(block)
        changes = (self.tail.rewrites, self.tail.truncations, self.tail.rotations)
        assert self.tail.read() == b""  # an unchanged file is not taken for a changed one
        assert (self.tail.rewrites, self.tail.truncations, self.tail.rotations) == changes
        if self.config.startswith("whole"):  # a version the tail drained is collected in full
            missing = Counter(whole_lines(self.versions[-1])) - Counter(self.out)
            assert not missing, f"lines of the current version never handed over: {missing}"

    def teardown(self) -> None:
        try:
            self._final_read()
            self._check()
        finally:
            self.tail.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    def _final_read(self) -> None:
        """What `Pipeline.run` does at the end: drain, flush, drain."""
        while block := self.tail.read():
            self._take(block)
        if last := self.tail.flush():
            self.out.append(last)
        while block := self.tail.read():
            self._take(block)

    def _check(self) -> None:
        got = Counter(self.out)
        final = Counter(line for _, line in placed(self.versions[-1]))
        assert not final - got, f"lines of the final file never handed over: {final - got}"
        every = {line for version in self.versions for _, line in placed(version)}
        assert set(got) <= every, f"lines no version held: {set(got) - every}"
        # Not twice unless the file repeats it: at most once per time a line newly took its offset.
        newly: Counter[bytes] = Counter()
        before: dict[int, bytes] = {}
        for version in self.versions:
            now = dict(placed(version))
            newly.update(line for at, line in now.items() if before.get(at) != line)
            before = now
        assert not got - newly, f"lines handed over more often than they were written: {got - newly}"


TailModel.TestCase.settings = settings(max_examples=150, stateful_step_count=30, derandomize=True,
                                       database=None, deadline=None,
                                       suppress_health_check=[HealthCheck.too_slow])
test_tail_model = TailModel.TestCase
