"""Pack 26 circles into the unit square, maximising the sum of their radii.

pack() returns a list of 26 (x, y, r) tuples. Only the EVOLVE-BLOCK may change.
"""

import math

# EVOLVE-BLOCK-START
N = 26
ROWS = 5
COLS = 5


def pack():
    """A 5 x 5 grid of equal circles, plus one small circle in a gap."""
    r = 0.5 / max(ROWS, COLS)
    circles = []
    for i in range(ROWS):
        for j in range(COLS):
            circles.append(((2 * j + 1) * r, (2 * i + 1) * r, r))
    gap = (math.sqrt(2) - 1) * r
    circles.append((2 * r, 2 * r, gap))
    return circles[:N]


# EVOLVE-BLOCK-END
