"""The search behind the check for calls that would wait for themselves
(``_waits_for``): a pure function of the waits between computations, tested on
graphs built by hand, without an event loop."""

from __future__ import annotations

from typing import Any, cast

from hypothesis import given
from hypothesis import strategies as st

from aiocache_swr._function import _waits_for


class Node:
    """A computation in the graph: what it waits for, and what waits for it; counts
    how many times the search reads either."""

    reads = 0

    def __init__(self) -> None:
        self._awaits: dict[Node, int] | None = None
        self._awaited_by: dict[Node, int] | None = None

    @property
    def awaits(self) -> dict[Node, int] | None:
        Node.reads += 1
        return self._awaits

    @property
    def awaited_by(self) -> dict[Node, int] | None:
        Node.reads += 1
        return self._awaited_by

    def wait_for(self, other: Node) -> None:
        self._awaits = {**(self._awaits or {}), other: 1}
        other._awaited_by = {**(other._awaited_by or {}), self: 1}


def waits_for(a: Node, b: Node) -> bool:
    return _waits_for(cast(Any, a), cast(Any, b))


def reachable(start: Node, target: Node) -> bool:
    seen, todo = {start}, [start]
    while todo:
        node = todo.pop()
        if node is target:
            return True
        for nxt in node._awaits or ():
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return False


@given(
    size=st.integers(1, 8),
    edges=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7)), max_size=20),
    ends=st.tuples(st.integers(0, 7), st.integers(0, 7)),
)
def test_it_finds_a_path_of_waits_exactly_when_there_is_one(
    size: int, edges: list[tuple[int, int]], ends: tuple[int, int]
) -> None:
    """On any graph of waits (cycles included), one computation waits for another,
    directly or through others, exactly when a path of waits leads from it to it."""
    nodes = [Node() for _ in range(size)]
    for a, b in edges:
        nodes[a % size].wait_for(nodes[b % size])
    start, target = nodes[ends[0] % size], nodes[ends[1] % size]
    assert waits_for(start, target) == reachable(start, target)


def test_joining_a_computation_that_waits_for_many_costs_little() -> None:
    """Many computations joining one that waits for many others: each check reads the
    side with fewer waits (nobody waits for the joining computation), not all of them."""
    joined, computing = Node(), Node()
    for _ in range(1_000):
        joined.wait_for(Node())
    Node.reads = 0
    assert not waits_for(joined, computing)
    assert Node.reads <= 4


def test_joining_from_a_computation_many_wait_for_costs_little() -> None:
    """The reverse: the joining computation has many waiting for it, and the joined one
    waits for nothing; the check reads that one's (empty) side."""
    joined, computing = Node(), Node()
    for _ in range(1_000):
        Node().wait_for(computing)
    Node.reads = 0
    assert not waits_for(joined, computing)
    assert Node.reads <= 4


def test_joining_the_top_of_a_long_chain_costs_little() -> None:
    """A computation joining the top of a chain of 1,000 computations, each waiting for
    the next, while one other waits for it: the check reads the short side."""
    top = Node()
    node = top
    for _ in range(1_000):
        nxt = Node()
        node.wait_for(nxt)
        node = nxt
    computing, caller = Node(), Node()
    caller.wait_for(computing)
    Node.reads = 0
    assert not waits_for(top, computing)
    assert Node.reads <= 10
