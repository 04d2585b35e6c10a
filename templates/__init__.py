"""Jinja2 templates (the DAG-import harness, the BuildKit Dockerfile), shipped as `airbuild_templates`."""
