"""Push delivery's model with the fault the model test lacks: CANCELLED from the server, after storing or before."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.collector.test_push_send_model import LOOKUP_FATES, SEND_FATES, Fate, assert_stored_exactly_once

# A db-manager stopping mid-call answers CANCELLED, by a race with UNAVAILABLE, stored or not.
WITH_CANCELLED = st.one_of(SEND_FATES, st.sampled_from([(True, "CANCELLED"), (False, "CANCELLED")]))
LOOKUPS = st.one_of(LOOKUP_FATES, st.just((False, "CANCELLED")))


@settings(max_examples=200, deadline=None)
@given(sends=st.lists(WITH_CANCELLED, max_size=12), lookups=st.lists(LOOKUPS, max_size=6),
       count=st.integers(1, 40), metrics=st.integers(1, 3))
def test_every_row_is_stored_exactly_once_when_the_server_cancels_calls(
        sends: list[Fate], lookups: list[Fate], count: int, metrics: int) -> None:
    assert_stored_exactly_once(sends, lookups, count, metrics)
