"""Arrow schemas, the teacher contract's constants and quarantine reason codes.

This package imports nothing else of coclabel, so every other package may import it.
"""
