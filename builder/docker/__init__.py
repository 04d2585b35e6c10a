"""docker: TODO."""
