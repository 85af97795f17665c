"""Blocks whose metric lines come in a few learnt shapes: one C-speed pass over the block, rows in line order.

`TemplateSet` keeps up to `MAX_TEMPLATES` line templates (`parsers.template`) learnt from the stream and
matches a block against all of them at once: one `findall` of `^(?:T1|T2|...|ODD)`, where the last
alternative takes any other line that holds a wanted name (an "odd" line: a warning that mentions `loss`, a
value that is no number, a JSON line, a shape not learnt). Odd lines go to the caller's exact line-by-line
path, which gets their true line numbers on demand; the rows of all lines come out in line order.

A block is taken this way only if the lines account for every occurrence of every wanted name in the block
(template lines by the names in their literal text, odd lines by their whole text): an occurrence anywhere
else (in a template line's head) sends the block down the exact path. So do an exponent or a huge number
that may overflow float64 (Go rejects it, and the skip must name its line) and a head whose time stamp can
only be judged from its whole line. Odd lines teach new shapes: a few are tried per block, and a block that
learnt one is matched again.
"""

from __future__ import annotations

import gc
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import chain, compress, repeat
from operator import itemgetter

from katib_metrics.parsers.model import MetricLog
from katib_metrics.parsers.numbers import plain_floats
from katib_metrics.parsers.template import LineTemplate, head_stamps

__all__ = ["MAX_TEMPLATES", "OddRows", "TemplateSet"]

MAX_TEMPLATES = 8
MAX_ROUNDS = 2  # learning rounds per block, each followed by one more pass
MAX_NEW = 3  # shapes learnt per round
MAX_TRIES = 16  # odd lines tried as a new shape per round
_new_log = tuple.__new__

# The exact rows of odd lines, one list per line, given the lines and a function from an odd line's index to
# its line number (computed only when called: a skip must name its line).
OddRows = Callable[[list[bytes], Callable[[int], int]], list[list[MetricLog]]]
Rows = list[MetricLog]


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Rows are tuples of strings, which hold no cycles: creating millions of them need not trigger the cycle
    collector (it would traverse each young row once, doubling the cost of building them). The switch is
    process-wide: another thread's garbage waits at most one block, and a caller that turned the collector off
    keeps it off."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class TemplateSet:
    """Learnt line shapes of one stream and the one regex that matches them all."""

    def __init__(self, wanted: dict[str, bytes]) -> None:
        self.wanted = wanted
        self.templates: list[LineTemplate] = []
        self.used: list[int] = []  # lines each template matched in the last block
        self.odd_lines = 0  # and lines no template fitted
        names = b"|".join(map(re.escape, sorted(wanted.values(), key=len, reverse=True)))
        firsts = b"".join(re.escape(raw[:1]) for raw in set(wanted.values()))
        # Any other line holding a wanted name: characters that cannot start one are skipped in a tight loop,
        # and the loop stops at the first name (possessive: linear in the line, whatever it holds).
        self._odd = b"((?:[^\n%s]++|(?!%s)[%s])*+(?:%s)[^\n]*)" % (firsts, names, firsts, names)
        self._compile()

    def _compile(self) -> None:
        # Last, any line at all (a noise line): every line start matches, so the search never steps through a
        # noise line character by character; its tuple holds only empty groups.
        parts = [template.pattern for template in self.templates] + [self._odd, rb"[^\n]*+"]
        self.regex = re.compile(b"(?m)^(?:%s)" % b"|".join(parts))
        self.offsets = [sum(template.groups for template in self.templates[:i]) for i in range(len(self.templates))]

    def extract(self, text: bytes, default_time: str, values: Counter[str], odd_rows: OddRows,
                lineno_at: Callable[[int], int]) -> Rows | None:
        """The wanted MetricLogs of `text` (whole lines), or None when the block must take the exact path.
        `lineno_at`: the line number of an offset in `text`."""
        # The matches and columns die with `_extract`'s frame, before the collector runs again: it then
        # traverses only the rows.
        with _gc_paused():
            return self._extract(text, default_time, values, odd_rows, lineno_at)

    def _extract(self, text: bytes, default_time: str, values: Counter[str], odd_rows: OddRows,
                 lineno_at: Callable[[int], int]) -> Rows | None:
        for round_ in range(MAX_ROUNDS + 1):
            kinds, odd, layout = self._match(text)
            self.used = list(map(len, kinds))
            if not odd or round_ == MAX_ROUNDS or not self._learn(odd):
                break
        self.odd_lines = len(odd)
        if self.odd_lines > sum(self.used) or not self._accounted(text, kinds, odd):
            return None  # mostly lines no template fits (the exact path alone is cheaper), or unsafe
        columns = [self._columns(template, matches, offset, default_time)
                   for template, matches, offset in zip(self.templates, kinds, self.offsets, strict=True)]
        if None in columns:
            return None
        for template, matches in zip(self.templates, kinds, strict=True):
            for name in template.wanted_names:
                values[name] += len(matches)
        odd_groups = odd_rows(odd, _OddPlaces(text, odd, lineno_at)) if odd else []
        if layout is None:  # one kind of line: rows straight from the columns, line after line
            per_line = chain.from_iterable(zip(*per, strict=True) for per in columns if per)
            return list(chain.from_iterable(chain(per_line, odd_groups)))
        return layout.merge([per or [] for per in columns], odd_groups)

    def _match(self, text: bytes) -> tuple[list[list[tuple[bytes, ...]]], list[bytes], _Layout | None]:
        """Per template its matches, the odd lines, and where each kind's lines are (None when the lines with
        rows are all of one kind)."""
        found = self.regex.findall(text)
        count = len(self.templates)
        if not count:
            return [], list(filter(None, found)), None
        odd_column = list(map(itemgetter(self.offsets[-1] + self.templates[-1].groups), found))
        keys = [list(map(itemgetter(offset + 1), found)) for offset in self.offsets]
        masks = [list(map(bool, column)) for column in keys] + [list(map(bool, odd_column))]
        sizes = [sum(mask) for mask in masks]
        kinds = [found if size == len(found) else list(compress(found, mask))
                 for mask, size in zip(masks[:count], sizes[:count], strict=True)]
        odd = list(compress(odd_column, masks[-1])) if sizes[-1] else []
        return kinds, odd, _Layout(found, masks, sizes) if sum(map(bool, sizes)) > 1 else None

    def _learn(self, odd: list[bytes]) -> bool:
        """Learn the shapes of the first odd lines that have one (up to `MAX_NEW`, one per shape); False when
        none does (or no room is left)."""
        learnt: list[LineTemplate] = []
        for line in odd[:MAX_TRIES]:
            if len(learnt) == MAX_NEW or any(template.regex.match(line) for template in learnt):
                continue
            template = LineTemplate.learn(line, self.wanted)
            if template is not None and all(template.pattern != known.pattern for known in self.templates):
                learnt.append(template)
        # Room is made by shapes that matched nothing lately.
        busy = [i for i, used in enumerate(self.used) if used]
        idle = [i for i, used in enumerate(self.used) if not used]
        room = MAX_TEMPLATES - len(busy)
        learnt = learnt[:room]
        if not learnt:
            return False
        keep = busy + idle[: room - len(learnt)]
        # The shapes seen most often are tried first.
        keep.sort(key=self.used.__getitem__, reverse=True)
        self.templates = [self.templates[i] for i in keep] + learnt
        self.used = [self.used[i] for i in keep] + [0] * len(learnt)
        self._compile()
        return True

    def _accounted(self, text: bytes, kinds: list[list[tuple[bytes, ...]]], odd: list[bytes]) -> bool:
        """Every occurrence of every wanted name lies in the literal text of a template line or in an odd line."""
        odd_text = b"\n".join(odd)
        for name, raw in self.wanted.items():
            expected = odd_text.count(raw) + sum(len(matches) * template.per_line[name]
                                                 for template, matches in zip(self.templates, kinds, strict=True))
            if text.count(raw) != expected:
                return False
        return True

    def _columns(self, template: LineTemplate, matches: list[tuple[bytes, ...]], offset: int,
                 default_time: str) -> list[list[MetricLog]] | None:
        """The rows of a template's lines, one list per wanted name, or None when a value or a head needs its
        whole line."""
        if not matches:
            return []
        texts = [b"\n".join(map(itemgetter(offset + 1 + i), matches)).decode("ascii")
                 for i in range(len(template.wanted_names))]
        columns = [text.split("\n") for text in texts]
        # Without an exponent a value cannot overflow float64: the template takes at most 300 integer digits.
        if any("e" in text or "E" in text for text in texts) \
                and plain_floats(list(chain.from_iterable(columns))) is None:
            return None  # an exponent may overflow float64, which Go rejects (the skip must name its line)
        stamps = head_stamps(list(map(itemgetter(offset), matches)), template.rfc_head, default_time)
        if stamps is None:
            return None
        return [list(map(_new_log, repeat(MetricLog), zip(stamps, repeat(name), column, strict=False)))
                for name, column in zip(template.wanted_names, columns, strict=True)]


class _Layout:
    """Which kind each line of a block is: the masks of each template's lines, then of the odd lines (a noise
    line is in none). Rows come out in line order."""

    def __init__(self, found: list[tuple[bytes, ...]], masks: list[list[bool]], sizes: list[int]) -> None:
        self.found, self.masks, self.sizes = found, masks, sizes

    def merge(self, columns: list[list[list[MetricLog]]], odd_groups: list[list[MetricLog]]) -> Rows:
        major = max(range(len(columns)), key=self.sizes.__getitem__)
        if (sum(self.sizes) - self.sizes[major]) * 8 <= self.sizes[major]:
            return self._splice(major, columns, odd_groups)
        groups: list[Sequence[Sequence[MetricLog]]] = [list(zip(*per, strict=True)) for per in columns]
        groups.append(odd_groups)
        sources: list[Iterator[Sequence[MetricLog]]] = [iter(group) for group in groups] + [repeat(())]  # noise
        return list(chain.from_iterable(map(next, map(sources.__getitem__, self._order()))))

    def _splice(self, major: int, columns: list[list[list[MetricLog]]], odd_groups: list[list[MetricLog]]) -> Rows:
        """Few lines of other kinds: the major kind's rows are copied in slices between them."""
        width = len(columns[major])
        flat = list(chain.from_iterable(zip(*columns[major], strict=True)))
        sources: list[Iterator[Sequence[MetricLog]]] = [iter(zip(*per, strict=True)) for per in columns]
        sources.append(iter(odd_groups))
        others = sorted((index, kind) for kind, mask in enumerate(self.masks) if kind != major and self.sizes[kind]
                        for index in compress(range(len(mask)), mask))
        mask = self.masks[major]
        out: Rows = []
        done = after = 0  # rows of the major kind copied; lines looked at
        for index, kind in others:
            end = done + width * sum(mask[after:index])
            out += flat[done:end]
            out += next(sources[kind])
            done, after = end, index + 1
        out += flat[done:]
        return out

    def _order(self) -> list[int]:
        """Each line's kind: template index, then len(templates) for odd, one more for noise."""
        found, masks, sizes = self.found, self.masks, self.sizes
        noise = len(found) - sum(sizes)
        most = max(range(len(sizes) + 1), key=[*sizes, noise].__getitem__)
        order = [most] * len(found)
        if most < len(sizes) and noise:
            empty = (b"",) * len(found[0])
            masks = [*masks, list(map(empty.__eq__, found))]
        for kind, mask in enumerate(masks):
            if kind != most:
                for index in compress(range(len(found)), mask):
                    order[index] = kind
        return order


class _OddPlaces:
    """Line numbers of the odd lines of a text, found in order and only when asked (a skip names its line)."""

    def __init__(self, text: bytes, lines: list[bytes], lineno_at: Callable[[int], int]) -> None:
        self.text, self.lines, self.lineno_at = text, lines, lineno_at
        self.numbers: list[int] = []
        self.resume = 0  # just after the last odd line placed

    def __call__(self, index: int) -> int:
        while len(self.numbers) <= index:
            line = self.lines[len(self.numbers)] + b"\n"
            # An odd line is the first whole line with its text after the previous one: lines with the same
            # text in between would be odd lines too (the regex decides a line from its text alone).
            if self.resume == 0 and self.text.startswith(line):
                at = 0
            else:
                at = self.text.find(b"\n" + line, max(self.resume - 1, 0)) + 1
                assert at > 0, "an odd line is a line of the text"
            self.numbers.append(self.lineno_at(at))
            self.resume = at + len(line)
        return self.numbers[index]
