"""Adapters for tests/test_worker_judging.py: the numpy reference with one side effect on its worker.

``flush-denormals``: turns on flush-to-zero / denormals-are-zero (``torch.set_flush_denormal``) in its
worker before returning the reference's outputs, so the worker must hand the outputs to the harness
to be judged.  ``thread-report``: returns the reference's outputs with the worker's thread settings in
its notes.  ``judging-breaker``: makes judging raise in its worker (a stand-in for a bug in normconf).
``case-mutator``: reverses its case's ``shape`` list in place after computing the reference's
outputs; ``input-writer``: scales its ``x`` in place after computing them; ``mutator-neighbour``:
the plain reference in the same worker.  ``env-a``, ``env-b`` (``NC_TEST_A=1`` and ``NC_TEST_SHARED=a`` /
``NC_TEST_B=2``) and ``env-c`` (``NC_TEST_SHARED=c``), all naming the worker ``env``: each reports its
worker's process id and those variables in its notes.
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
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "XLA_FLAGS",
    "GLIBC_TUNABLES",
)


def mmapped_growth_of_a_40mb_array() -> str:
    """How many bytes glibc's malloc serves by mmap for one 40 MiB NumPy array (mallinfo2's hblkhd
    before and during), or ``unavailable`` (not glibc >= 2.33)."""
    import ctypes

    import numpy as np

    class Info(ctypes.Structure):
        _fields_ = [
            (f, ctypes.c_size_t)
            for f in (
                "arena",
                "ordblks",
                "smblks",
                "hblks",
                "hblkhd",
                "usmblks",
                "fsmblks",
                "uordblks",
                "fordblks",
                "keepcost",
            )
        ]

    try:
        fn = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return "unavailable"
    fn.restype = Info
    before = fn().hblkhd
    a = np.ones(40 << 20, np.uint8)
    during = fn().hblkhd
    del a
    return str(during - before)


class ThreadReport(NumpyReference):
    id = "thread-report"
    worker = "thread-report"
    description = "the numpy reference, reporting its worker's thread settings in its notes"

    def run_case(self, case, inputs):
        obs = super().run_case(case, inputs)
        notes = [*obs.notes, *(f"{v}={os.environ.get(v, '')}" for v in THREAD_VARS)]
        return Observed(obs.outputs, [*notes, f"mmapped={mmapped_growth_of_a_40mb_array()}"])


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


class CaseMutator(NumpyReference):
    id = "case-mutator"
    worker = "mutator"
    description = "the numpy reference, reversing the case's shape list in place (an adapter bug)"

    def run_case(self, case, inputs):
        obs = super().run_case(case, inputs)
        case.shape.reverse()
        return obs


class InputWriter(NumpyReference):
    id = "input-writer"
    worker = "mutator"
    description = "the numpy reference, then x *= 2 in place (an adapter bug)"

    def run_case(self, case, inputs):
        obs = super().run_case(case, inputs)
        inputs.x[0][...] *= 2
        return obs


class MutatorNeighbour(NumpyReference):
    id = "mutator-neighbour"
    worker = "mutator"
    description = "the numpy reference, in case-mutator's worker"


class _EnvReport(NumpyReference):
    worker = "env"

    def run_case(self, case, inputs):
        obs = super().run_case(case, inputs)
        names = ("NC_TEST_A", "NC_TEST_B", "NC_TEST_SHARED")
        return Observed(
            obs.outputs, [*obs.notes, f"pid={os.getpid()}", *(f"{v}={os.environ.get(v, '-')}" for v in names)]
        )


class EnvA(_EnvReport):
    id = "env-a"
    worker_env = {"NC_TEST_A": "1", "NC_TEST_SHARED": "a"}
    description = "the numpy reference, reporting its worker's pid and NC_TEST_* variables"


class EnvB(_EnvReport):
    id = "env-b"
    worker_env = {"NC_TEST_B": "2"}
    description = "as env-a, with another variable (compatible: the same process)"


class EnvC(_EnvReport):
    id = "env-c"
    worker_env = {"NC_TEST_SHARED": "c"}
    description = "as env-a, with another value of NC_TEST_SHARED (a second process)"


ADAPTERS = [FlushDenormals, ThreadReport, JudgingBreaker, CaseMutator, InputWriter, MutatorNeighbour, EnvA, EnvB, EnvC]
