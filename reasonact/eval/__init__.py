"""Evaluation (notebook 06): the protocol, metrics, reports and the paper's tables as experiments."""
