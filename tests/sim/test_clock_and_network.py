"""The virtual clock and the seeded router: order, cancellation, faults, partitions."""

from __future__ import annotations

import random

from bonjourgrid.sim.clock import VirtualClock
from bonjourgrid.sim.network import Faults, Network


def test_events_run_in_time_order_and_same_instant_in_schedule_order() -> None:
    clock = VirtualClock()
    seen: list[str] = []
    clock.call_at(2.0, lambda: seen.append("c"))
    clock.call_at(1.0, lambda: seen.append("a"))
    clock.call_at(1.0, lambda: seen.append("b"))
    clock.run(until=10.0)
    assert seen == ["a", "b", "c"]
    assert clock.now == 10.0


def test_a_cancelled_timer_never_runs_and_run_stops_at_until() -> None:
    clock = VirtualClock()
    seen: list[float] = []
    t = clock.call_later(1.0, lambda: seen.append(clock.now))
    clock.call_later(5.0, lambda: seen.append(clock.now))
    t.cancel()
    clock.run(until=3.0)
    assert seen == [] and clock.now == 3.0
    clock.run(until=6.0)
    assert seen == [5.0]


def _net(faults: Faults, seed: int = 1) -> tuple[VirtualClock, Network, list[tuple[str, object]]]:
    clock = VirtualClock()
    net = Network(clock, random.Random(seed), faults)
    got: list[tuple[str, object]] = []
    net.attach("a", lambda src, m: None)
    net.attach("b", lambda src, m: got.append((src, m)))
    return clock, net, got


def test_a_partition_cuts_both_ways_until_healed() -> None:
    clock, net, got = _net(Faults())
    net.isolate({"b"}, island=1)
    net.send("a", "b", "lost")
    clock.run(1.0)
    net.heal({"b"})
    net.send("a", "b", "arrives")
    clock.run(2.0)
    assert got == [("a", "arrives")]


def test_a_crashed_node_loses_what_was_in_flight_to_it() -> None:
    clock, net, got = _net(Faults())
    net.send("a", "b", "in flight")
    net.crash("b")
    clock.run(1.0)
    assert got == [] and net.dropped == 1


def test_drop_and_duplicate_rates_are_what_was_asked_and_repeatable() -> None:
    def fates(seed: int) -> list[tuple[str, object]]:
        clock, net, got = _net(Faults(drop=0.2, duplicate=0.2, slow=0.5), seed)
        for i in range(2000):
            net.send("a", "b", i)
        clock.run(10.0)
        return got

    got = fates(7)
    delivered = {m for _, m in got}
    assert 0.75 < len(delivered) / 2000 < 0.85  # ~80 % survive the drops
    assert len(got) - len(delivered) > 200  # duplicates arrive
    assert [m for _, m in got] != sorted(m for _, m in got)  # slow ones are reordered
    assert got == fates(7)
