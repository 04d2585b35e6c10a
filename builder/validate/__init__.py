"""DAG validation: every DAG file imported in a sandbox against the image's own environment.

Public: `run` (validate, ValidationInputs, Report, dag_environment, run_project_tests), `sandbox`
(bwrap, docker or none: SandboxRun, run, Session), `harness` (the program run inside, as a
module), `memory` (ValidationMemory: what a watch session keeps), `astro_tests` (Astro's parse
test), `dag_run` and `dag_runner` (`airbuild run`), `syntax` (the quick compile check).
"""
