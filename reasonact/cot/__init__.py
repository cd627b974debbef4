"""Chains of thought (notebook 02): teachers, the quality filter, the FRE text data."""
