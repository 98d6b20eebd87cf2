"""Pack 26 circles into the unit square, maximising the sum of their radii.

pack() returns a list of 26 (x, y, r) tuples. Only the EVOLVE-BLOCK may change.
"""

import math

N = 26  # the task: always 26 circles

# EVOLVE-BLOCK-START
INNER = 8  # circles on the inner ring
OUTER = N - 1 - INNER  # circles on the outer ring: the rest
INNER_RADIUS = 0.25  # distance of the inner ring from the centre
OUTER_RADIUS = 0.45  # distance of the outer ring from the centre


def centres():
    """One circle in the middle, a ring of INNER around it and a ring of OUTER around that."""
    points = [(0.5, 0.5)]
    for count, distance in ((INNER, INNER_RADIUS), (OUTER, OUTER_RADIUS)):
        for k in range(count):
            angle = 2 * math.pi * k / count
            points.append((0.5 + distance * math.cos(angle), 0.5 + distance * math.sin(angle)))
    return points


def radii(points):
    """Radii that keep every circle inside the square and apart from the others.

    Each circle starts as large as the walls allow; every overlapping pair then shrinks
    in proportion until the two just touch.
    """
    r = [min(x, y, 1 - x, 1 - y) for x, y in points]
    for i in range(len(points)):
        for j in range(i + 1, len(points)):
            distance = math.dist(points[i], points[j])
            if r[i] + r[j] > distance:
                scale = distance / (r[i] + r[j])
                r[i] *= scale
                r[j] *= scale
    return r


def pack():
    points = centres()
    return [(x, y, r) for (x, y), r in zip(points, radii(points), strict=True)][:N]


# EVOLVE-BLOCK-END
