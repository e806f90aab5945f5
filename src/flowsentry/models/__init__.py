"""Detectors of every kind behind one contract, and what builds, trains and loads them."""
