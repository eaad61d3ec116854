"""Beam PTransforms and DoFns, each a thin wrapper over a pure function or class."""
