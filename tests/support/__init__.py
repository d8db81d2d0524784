"""The test kit shared by every test folder: the small federation and its driver (``fedkit``),
and ``require_tool`` for tests that need an outside program (skip locally, fail in CI)."""
