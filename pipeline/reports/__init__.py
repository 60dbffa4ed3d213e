"""Comparing runs: tables and figures over seeds, the answer page, plots."""
