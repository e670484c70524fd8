"""Maintenance scripts (data preparation, head training); ``scripts.prepare_data`` is shared with the benchmarks."""
