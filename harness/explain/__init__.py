"""The explanation engine: *why* does a backend's output differ from the reference?

Two kinds of explanation, kept apart (docs/explain.md):

* a **convention** — a discrete choice of the :mod:`.catalog` (variance estimators, momentum
  direction and average, eps placement, statistics source, channel axis, affine parts,
  initial statistics, documented default values, numbers solved from the data) — is found
  by rerunning the reference under it and reproducing the backend's output;
* **precision** — working dtype, variance algorithm, summation order, folded/FMA arithmetic —
  is judged against a derived forward-error bound (:mod:`.bounds`), never by emulating one
  summation order, so the verdict is the same on every machine.

The engine sees only the case, the inputs and the arrays, never a backend's name.

Modules, one job each: :mod:`.catalog` (the knobs as data), :mod:`.bounds` (error bounds),
:mod:`.solve` (numbers solved from the data), :mod:`.search` (search and ranking, texts),
:mod:`.shapes` (what an unexplained error looks like), :mod:`.pair` (corroboration over a
pair's outputs, localization), :mod:`.refcache` (reference outputs under alternatives),
:mod:`.arrays` (residuals).
"""

from normconf.explain.arrays import residual
from normconf.explain.bounds import Model, models_for
from normconf.explain.catalog import (
    KNOBS,
    KNOWN_BATCH_WEIGHTS,
    KNOWN_EPS,
    affected,
    describe_change,
    single_alternatives,
)
from normconf.explain.localize import STAGES, localize
from normconf.explain.pair import review_pair
from normconf.explain.refcache import CACHE, ReferenceCache, _ReferenceCache
from normconf.explain.search import Candidate, Finding, explain, explain_output
from normconf.explain.shapes import error_shape
from normconf.explain.solve import solve_eps, solve_momentum, solved_alternatives

_CACHE = CACHE

__all__ = [
    "CACHE",
    "Candidate",
    "Finding",
    "KNOBS",
    "KNOWN_BATCH_WEIGHTS",
    "KNOWN_EPS",
    "Model",
    "ReferenceCache",
    "STAGES",
    "affected",
    "describe_change",
    "error_shape",
    "explain",
    "explain_output",
    "localize",
    "models_for",
    "residual",
    "review_pair",
    "single_alternatives",
    "solve_eps",
    "solve_momentum",
    "solved_alternatives",
    "_ReferenceCache",
]
