"""Serving executors: one per Plan arm, and the pipelines that dispatch to them."""
