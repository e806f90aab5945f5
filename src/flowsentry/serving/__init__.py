"""BentoML serving: request schemas, the job scorer (the champion behind the service),
and the service."""
