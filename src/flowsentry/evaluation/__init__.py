"""Evaluation: metrics and plots for anomaly scores."""
