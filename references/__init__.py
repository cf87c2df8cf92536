"""The NumPy reference implementation of BatchNorm (the float64 oracle)."""

from normconf.references.batchnorm import OUTPUT_NAMES, batch_norm_reference

__all__ = ["OUTPUT_NAMES", "batch_norm_reference"]
