"""Metrics under the tune/holdout protocol, and reports."""
