"""The program cambrian evolves. Only the code between the EVOLVE-BLOCK markers may change."""

# EVOLVE-BLOCK-START
WIDTH = 0.5
HEIGHT = 0.5


def area():
    return WIDTH * HEIGHT


# EVOLVE-BLOCK-END
