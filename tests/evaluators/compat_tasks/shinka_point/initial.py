"""Find the number nearest to a hidden target (a ShinkaEvolve-style task)."""

# EVOLVE-BLOCK-START
GUESS = 1.5
# EVOLVE-BLOCK-END


def run_experiment(seed=0):
    """Return this program's guess."""
    return GUESS
