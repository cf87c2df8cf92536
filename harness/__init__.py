"""normconf: a cross-framework conformance harness for Batch Normalization."""

__version__ = "0.1.0"
