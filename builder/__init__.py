"""airbuild: reproducible, content-addressed OCI images for Airflow projects."""

__version__ = "0.1.0"
