"""Push delivery's model with the fault the model test lacks: CANCELLED from the server, after storing or before."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from katib_metrics.collector.push_send import Batch, deliver
from tests.collector.grpc_doubles import FakeClock
from tests.collector.test_push_send_model import LOOKUP_FATES, POLICY, SEND_FATES, Fate, ScriptedChannel, rows

# A db-manager stopping mid-call answers CANCELLED, by a race with UNAVAILABLE, stored or not.
WITH_CANCELLED = st.one_of(SEND_FATES, st.sampled_from([(True, "CANCELLED"), (False, "CANCELLED")]))
LOOKUPS = st.one_of(LOOKUP_FATES, st.just((False, "CANCELLED")))


@settings(max_examples=200, deadline=None)
@given(sends=st.lists(WITH_CANCELLED, max_size=12), lookups=st.lists(LOOKUPS, max_size=6),
       count=st.integers(1, 40), metrics=st.integers(1, 3))
def test_every_row_is_stored_exactly_once_when_the_server_cancels_calls(
        sends: list[Fate], lookups: list[Fate], count: int, metrics: int) -> None:
    channel = ScriptedChannel(sends, lookups)
    batch = Batch(rows(count, metrics))
    expected = Counter((r.time_stamp, r.name, r.value) for r in batch.rows)
    deliver(channel, "t", batch, deadline=lambda: float("inf"), policy=POLICY, clock=FakeClock())
    assert Counter(channel.stored) == expected
    channel.close()
