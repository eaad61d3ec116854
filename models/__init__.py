"""Torch models (teacher, students, action space, flow matching) and pose math. No Beam here."""
