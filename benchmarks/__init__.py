"""Benchmarks of mmgr-qdrant, run from the repository root as modules: ``python -m benchmarks.retrieval --json``.

Each prints a table and, with ``--json``, one JSON line last; ratios compare against baselines
measured in the same run. ``make bench`` runs them all.
"""
