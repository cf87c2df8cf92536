"""Adapters for tests/test_worker_judging.py: the numpy reference with one side effect on its worker.

``flush-denormals``: turns on flush-to-zero / denormals-are-zero (``torch.set_flush_denormal``) in its
worker before returning the reference's outputs, so the worker must hand the outputs to the harness
to be judged.  ``thread-report``: returns the reference's outputs with the worker's thread settings in
its notes.  ``judging-breaker``: makes judging raise in its worker (a stand-in for a bug in normconf).
Loaded with ``--adapter tests.judging_adapters:ADAPTERS``.
"""

from __future__ import annotations

import os

from normconf.adapters.base import Observed
from normconf.adapters.numpy_ref import NumpyReference


class FlushDenormals(NumpyReference):
    id = "flush-denormals"
    worker = "flush-denormals"
    description = "the numpy reference, leaving its process flushing subnormals (torch.set_flush_denormal)"

    def run_case(self, case, inputs):
        import torch

        obs = super().run_case(case, inputs)
        torch.set_flush_denormal(True)
        return obs


#: the variables tests/test_worker_judging.py expects every worker to start with
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY", "XLA_FLAGS")


class ThreadReport(NumpyReference):
    id = "thread-report"
    worker = "thread-report"
    description = "the numpy reference, reporting its worker's thread settings in its notes"

    def run_case(self, case, inputs):
        obs = super().run_case(case, inputs)
        return Observed(obs.outputs, [*obs.notes, *(f"{v}={os.environ.get(v, '')}" for v in THREAD_VARS)])


class JudgingBreaker(NumpyReference):
    id = "judging-breaker"
    worker = "judging-breaker"
    description = "the numpy reference, after which judging raises in its worker"

    def run_case(self, case, inputs):
        import normconf.results

        def broken(*_a, **_k):
            raise ZeroDivisionError("planted by tests/judging_adapters.py")

        normconf.results.rows_for = broken
        return super().run_case(case, inputs)


ADAPTERS = [FlushDenormals, ThreadReport, JudgingBreaker]
