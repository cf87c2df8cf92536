"""Small adapters used by the plugin tests (loaded by worker processes via module:Name).

``ScaledReference`` is the reference with its output multiplied by 1.5 — a planted fault;
``EchoReference`` returns the reference's y (rounded to the case dtype).  tests/test_cli_ci.py
writes adapter files that subclass ``EchoReference`` under other ids.
"""

from normconf.adapters.base import Adapter, Observed
from normconf.oracle import reference_outputs


class EchoReference(Adapter):
    id = "plugin-echo"
    framework = "numpy"
    worker = "plugin"
    modes = ("train", "eval")

    def run(self, case, inputs):
        ref = reference_outputs(case, inputs)
        return Observed({"y": [a.astype(inputs.x[0].dtype) for a in ref["y"]]}, notes=["test plugin"])


class ScaledReference(EchoReference):
    id = "plugin-scaled"

    def run(self, case, inputs):
        obs = super().run(case, inputs)
        return Observed({"y": [a * 1.5 for a in obs.outputs["y"]]})


ADAPTERS = [EchoReference, ScaledReference]
