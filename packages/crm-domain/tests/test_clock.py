"""Clocks are aware; ids sort by creation time and never repeat."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from crm_domain.clock import FixedClock, SystemClock, UlidFactory
from crm_domain.ports import Clock, IdFactory


def test_clocks_satisfy_the_port_and_are_aware() -> None:
    assert isinstance(SystemClock(), Clock)
    assert SystemClock().now().tzinfo is not None
    clock = FixedClock(datetime(2026, 1, 1, tzinfo=UTC))
    clock.advance(timedelta(minutes=5))
    assert clock.now() == datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    with pytest.raises(ValueError, match="aware"):
        FixedClock(datetime(2026, 1, 1))


def test_ulids_are_monotonic_and_unique_across_threads() -> None:
    factory = UlidFactory()
    assert isinstance(factory, IdFactory)
    out: list[list[str]] = [[] for _ in range(4)]

    def work(slot: list[str]) -> None:
        slot.extend(factory.new_id() for _ in range(5000))

    threads = [threading.Thread(target=work, args=(slot,)) for slot in out]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for slot in out for i in slot]
    assert len(set(every)) == 20000
    for slot in out:
        assert slot == sorted(slot)  # each caller sees strictly increasing ids
    assert all(len(i) == 26 for i in every)
