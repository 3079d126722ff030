"""Developer scripts (generators, benchmark); importable so they can share helpers."""
