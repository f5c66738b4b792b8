"""The switch rounds: the hosts cut into SWITCH_BATCH batches, the first the canary."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def describe_rounds(rounds: Sequence[Sequence[str]]) -> str:
    """``1. a  2. b, c`` — the switch rounds in order, for the summary and the plan."""
    return "  ".join(f"{n}. {', '.join(names)}" for n, names in enumerate(rounds, 1))


def rounds(hosts: list[T], sizes: list[int]) -> list[list[T]]:
    """``hosts`` cut into consecutive rounds of ``sizes``."""
    done, cut = 0, []
    for size in sizes:
        cut.append(hosts[done : done + size])
        done += size
    return [batch for batch in cut if batch]


def batch_sizes(switch_batch: str, hosts: int) -> list[int]:
    """How many of ``hosts`` hosts each switch round holds, in order (Ansible's ``serial``:
    each item of SWITCH_BATCH is one round, the last repeats; a percentage is of the whole
    fleet, rounded down, at least 1)."""
    items = switch_batch.split(",")
    sizes: list[int] = []
    while sum(sizes) < hosts:
        item = items[min(len(sizes), len(items) - 1)]
        size = hosts * int(item[:-1]) // 100 if item.endswith("%") else int(item)
        sizes.append(min(max(1, size), hosts - sum(sizes)))
    return sizes
