"""BentoML serving: request schemas, the detector wiring, and the service."""
