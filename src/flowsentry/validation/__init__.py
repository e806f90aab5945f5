"""Data validation with Great Expectations: the suite and its runner."""
