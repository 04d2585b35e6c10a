"""Shipping a built image: push what the registry lacks, tag, record.

Meets the engine only at the image. Public: `deploy` (deploy, DeployOptions, splice_layer for
DAG-only deploys), `records` (.airbuild/deploys.jsonl: append, read).
"""
