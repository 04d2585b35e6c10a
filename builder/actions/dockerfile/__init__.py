"""actions.dockerfile: TODO."""
