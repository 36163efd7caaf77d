"""Downstream tasks: their data, labels and official metrics (GLUE first)."""
