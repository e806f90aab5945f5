"""Promotion gate and model registry (BentoML model store + champion pointer)."""
