"""How a process that holds thousands of connections collects cyclic garbage (API pods, the fan-out load generator).

CPython's default runs a young collection every 700 new container objects and moves whatever is alive at that
moment to an older generation. A stream's request, response and task objects live for seconds while a pod is
busy, so in a connection storm they piled into the oldest generation and kept setting off full collections,
each of which walks every object of every open stream: in a drained pod's reconnect storm (10,000 clients
coming back to a pod of three processes) one process ran six full collections of ~0.7 s each, a quarter of its
CPU, and perf put `gc_collect_main` at 8% of the whole machine.

So: what start-up built (modules, settings, pools) is frozen out of every collection, and a young collection
waits for 10,000 new objects, by which time most of a request's objects are gone (reference counting frees
them; the collector is only for cycles). Fewer survive to be promoted, and a full collection comes rarely. The
pods' memory per connection did not change (20.0 KB in `bench.fanout`). Cycles are collected as before, only later.
"""

import gc

YOUNG_THRESHOLD = 10_000  # new container objects between young collections (CPython: 700)
MIDDLE_THRESHOLD = 20  # young collections between middle ones (CPython: 10)
OLD_THRESHOLD = 10  # middle collections before a full one is considered (CPython: 10)


def settle_after_startup() -> None:
    """Once the process has started: freeze what exists and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
