"""bases: TODO."""
