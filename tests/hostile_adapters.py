"""Planted backends that return malformed outputs (never registered outside the tests).

Load with ``--adapter tests.hostile_adapters:ADAPTERS`` or ``Runner(extra_specs=(SPEC,))``.
Each is the NumPy reference (all outputs, rounded like a framework's) with one thing broken:

======================  =========================================================================
backend                 what it returns
======================  =========================================================================
hostile-correct         the reference, intact (must pass, in the same worker as the others)
hostile-flat            ``y`` flattened to 1-D
hostile-0d              ``y`` as a 0-d array
hostile-transposed      ``y`` transposed (``y.T``)
hostile-complex         ``y`` as complex128 (real part right, imaginary part 1)
hostile-int             ``y`` as int64
hostile-object          ``y`` as an object array (of Python floats)
hostile-list            ``y`` as nested Python lists, not an array
hostile-key             ``y`` under the key ``"Y"`` (the statistics alone would pass)
hostile-steps           ``y`` with one step more than the case has
hostile-huge            a 256 MiB ``y`` for the case (lazily zeroed pages: cheap to make)
hostile-huge-notes      right outputs, plus a note of 8 MiB
hostile-bypass          defeats the worker's own checks (patches them in its process), then returns a
                        256 MiB ``y``: judged in that worker (issue 18), rows_for refuses it (wrong
                        shape) and only rows reach the harness, whose reply bound still stands
======================  =========================================================================

The hostile ones share the worker group ``hostile`` (a rejected result must not cost the worker);
``hostile-bypass`` has its own group, since it sabotages the process it runs in.
"""

from __future__ import annotations

import numpy as np

from normconf.adapters.base import Adapter, Observed
from normconf.inputs import np_dtype
from normconf.oracle import reference_outputs

SPEC = "tests.hostile_adapters:ADAPTERS"
#: bytes of the oversized replies (far above the bound of a small case, far below 2 GiB)
HUGE = 256 << 20


class HostileCorrect(Adapter):
    id = "hostile-correct"
    framework = "numpy"
    worker = "hostile"
    description = "test-only: the reference, intact"

    def outputs(self, case, inputs) -> dict:
        ref = reference_outputs(case, inputs)
        out_dt, par_dt = np_dtype(case.dtype), np_dtype(case.params_dtype)
        out = {}
        for name, steps in ref.items():
            dt = out_dt if name in ("y", "x_hat", "eval_y") else par_dt
            with np.errstate(over="ignore", invalid="ignore"):
                out[name] = [a.astype(dt) for a in steps]
        return out

    def break_(self, out: dict) -> dict:
        return out

    def run(self, case, inputs):
        return Observed(self.break_(self.outputs(case, inputs)), notes=[f"test-only: {self.description}"])


def _hostile(ident: str, what: str, fn, worker: str = "hostile"):
    cls = type(
        f"Hostile_{ident}",
        (HostileCorrect,),
        {
            "id": f"hostile-{ident}",
            "worker": worker,
            "description": what,
            "break_": lambda self, out: fn(out),
            "__module__": __name__,
        },
    )
    return cls


def _with_y(f):
    def fn(out):
        out["y"] = [f(a) for a in out["y"]]
        return out

    return fn


def _renamed(out):
    out["Y"] = out.pop("y")
    return out


def _more_steps(out):
    out["y"] = out["y"] + out["y"][-1:]
    return out


def _huge(out):
    out["y"] = [np.zeros(HUGE // 8)]  # np.zeros maps zero pages lazily: nothing is touched here
    return out


class HugeNotes(HostileCorrect):
    id = "hostile-huge-notes"
    description = "right outputs and a note of 8 MiB"

    def run(self, case, inputs):
        return Observed(self.outputs(case, inputs), notes=["x" * (8 << 20)])


class Bypass(HostileCorrect):
    id = "hostile-bypass"
    worker = "hostile-bypass"
    description = "defeats the worker's output checks, then sends 256 MiB"

    def run(self, case, inputs):
        try:  # the worker's checks, in this process only (what memory-corrupting native code could do)
            import normconf.validate_outputs as vo

            vo.check = lambda case, outputs: None
            vo.result_bound = lambda case: 1 << 62
        except ImportError:  # a harness without them
            pass
        return Observed(_huge(self.outputs(case, inputs)))


ADAPTERS = [
    HostileCorrect,
    _hostile("flat", "y flattened", _with_y(lambda a: a.reshape(-1))),
    _hostile("0d", "y as a 0-d array", _with_y(lambda a: np.asarray(a.reshape(-1)[0]))),
    _hostile("transposed", "y transposed", _with_y(lambda a: np.ascontiguousarray(a.T))),
    _hostile("complex", "y as complex", _with_y(lambda a: a.astype(np.complex128) + 1j)),
    _hostile("int", "y as int64", _with_y(lambda a: a.astype(np.int64))),
    _hostile("object", "y as an object array", _with_y(lambda a: a.astype(object))),
    _hostile("list", "y as nested lists", _with_y(lambda a: a.tolist())),
    _hostile("key", "y under the key 'Y'", _renamed),
    _hostile("steps", "one step of y too many", _more_steps),
    _hostile("huge", "a 256 MiB y", _huge),
    HugeNotes,
    Bypass,
]
#: every hostile backend (all but the correct one)
HOSTILE = [a.id for a in ADAPTERS if a is not HostileCorrect]
