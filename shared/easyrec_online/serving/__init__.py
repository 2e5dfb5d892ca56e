"""Serving plane: scoring with the current model version, kept warm (model runtime)."""
