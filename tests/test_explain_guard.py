"""False-explanation guard: precision-only backends never get a convention or a fitted number.

Each example is a backend that follows the case's conventions exactly but computes in another
working precision (float32, float16, bfloat16) with another summation order (pairwise, forward,
backward, blocks of 8/64/4096, Kahan, a random permutation) and affine arithmetic (unfolded,
folded, folded with FMA) — tests/precision_backends.py, independent of the reference.  Every
output must pass or be explained as *precision*: never a convention, never a solved number,
never left unexplained.
"""

from __future__ import annotations

import collections

import numpy as np

from normconf.compare import compare
from normconf.explain import explain_output
from normconf.inputs import generate
from normconf.oracle import expected_outputs
from normconf.results import _ordered, output_dtype, tolerance_for
from tests.precision_backends import guard_examples, precision_outputs

N_EXAMPLES = 520


def test_precision_only_backends_never_get_a_convention():
    outcome = collections.Counter()
    false = []
    for i, (case, order, working, arithmetic) in enumerate(guard_examples(N_EXAMPLES)):
        inputs = generate(case)
        exp = expected_outputs(case, inputs)
        obs = precision_outputs(case, inputs, order=order, working=working, arithmetic=arithmetic, seed=i)
        memory: list = []
        for name in _ordered(obs):
            tol = tolerance_for(case, name)
            for k, (o, e) in enumerate(zip(obs[name], exp[name]), start=1):
                if compare(o, e, tol, output_dtype(case, name)).close:
                    outcome["pass"] += 1
                    continue
                f = explain_output(case, inputs, name, k, np.asarray(o), e, tol, memory=memory)
                if f.label.startswith("precision="):
                    outcome["precision"] += 1
                else:
                    false.append(
                        f"example {i} ({case.dtype} {case.shape} {case.mode}, {order}/{working}/{arithmetic}) "
                        f"{name} step {k}: {f.label or 'mismatch'}: {f.text[:300]}"
                    )
    assert outcome["precision"] > 1000, outcome  # the guard exercises the bounds, not only passes
    assert not false, f"{len(false)} false explanations:\n" + "\n".join(false[:10])
