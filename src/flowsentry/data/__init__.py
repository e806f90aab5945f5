"""Data in: Flow-Bench traces, the jobs table's schema, context, splits and the inbox."""
