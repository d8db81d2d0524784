"""The test kit shared by every test folder: the small federation and its driver (``fedkit``),
``require_tool`` for tests that need an outside program (skip locally, fail in CI), a private
Kubo daemon (``kubo_daemon``) and a federation across network-namespace hosts (``multihost``,
also used by ``scripts/bench_multihost.py``)."""
