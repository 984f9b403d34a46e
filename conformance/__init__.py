"""Conformance suite for MPNet and MPT implementations: golden cases from upstream and
invariants."""

__version__ = "0.1.0"
