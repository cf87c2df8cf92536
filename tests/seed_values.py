"""The seed example (docs/seed.md), derived independently of this code base (shared by the tests).

N=3, C=1, H=1, W=6, eps 1e-5, biased variance.
"""

import numpy as np

#: the article's 18 input values, row by row
SEED = [
    11.1,
    -2.2,
    23.3,
    54.4,
    58.5,
    -16.6,
    -97.7,
    -28.8,
    49.9,
    -61.3,
    52.6,
    -33.9,
    -2.45,
    -15.7,
    72.4,
    9.1,
    47.2,
    21.7,
]
#: the reference y (biased variance, eps 1e-5), shape (3, 6)
SEED_Y_ROWS = np.array(
    [
        [0.073358, -0.228133, 0.349912, 1.054900, 1.147841, -0.554558],
        [-2.392967, -0.831113, 0.952892, -1.567836, 1.014097, -0.946722],
        [-0.233800, -0.534156, 1.462932, 0.028021, 0.891688, 0.313643],
    ]
)
#: the same as an (N, C, H, W) array
SEED_Y = SEED_Y_ROWS.reshape(3, 1, 1, 6)
#: real tiny-dnn's first row (unbiased variance)
TINY_DNN_ROW0 = np.array([0.071291, -0.221705, 0.340054, 1.025179, 1.115501, -0.538933])
