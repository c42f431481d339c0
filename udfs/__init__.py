"""Pandas UDFs and the per-batch functions they call."""
