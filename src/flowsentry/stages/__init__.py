"""Pipeline stages. Each is one function `run(cfg, ...) -> summary`, called alike by
the CLI (and so dvc.yaml), the Prefect flows and the tests."""
