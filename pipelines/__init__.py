"""Beam pipelines (label, clips, distill, bench) and the `coclabel` command."""
