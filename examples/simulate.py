"""A stand-in for your simulation in docs/guides/design.md: reads a CSV of inputs
(columns a and b) and writes it again with the output column y added.

    python examples/simulate.py INPUTS.csv RESULTS.csv
"""

import sys

import numpy as np

rows = np.loadtxt(sys.argv[1], delimiter=",", skiprows=1, ndmin=2)
a, b = rows[:, 0], rows[:, 1]
y = np.sin(a / 2) * (b / 100) + 0.02 * (b - 150)
np.savetxt(sys.argv[2], np.c_[a, b, y], delimiter=",", header="a,b,y", comments="", fmt="%.10g")
