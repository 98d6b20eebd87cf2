"""Find the point nearest to a hidden target (an OpenEvolve-style task)."""

# EVOLVE-BLOCK-START
X = 1.0
Y = 0.5
# EVOLVE-BLOCK-END


def solve():
    """Return the point proposed by this program."""
    return X, Y


if __name__ == "__main__":
    print(solve())
