"""Tenants, their rules, where they come from, and the ownership index."""
