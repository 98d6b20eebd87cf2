"""Online bin packing heuristic: score the open bins that can take the next item.

The evaluator feeds the items one by one. For each item it passes the remaining
capacities of the open bins that still have room; the bin whose priority is highest
takes the item (the first one on ties), and a new bin opens when none has room.
Only the EVOLVE-BLOCK may change; the sandbox has the standard library only (no numpy).
"""

import math  # noqa: F401 - available to evolved heuristics


# EVOLVE-BLOCK-START
def priority(item: float, bins: list[float]) -> list[float]:
    """Score each open bin's remaining capacity for placing item; the highest wins."""
    # best fit: prefer the bin that the item fills most tightly
    return [-(b - item) for b in bins]


# EVOLVE-BLOCK-END
