"""Benchmarks and the soak scenario (not tests)."""
