"""oci: TODO."""
