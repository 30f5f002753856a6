"""Authentication methods: each returns an Identity, None (not my kind), or raises."""
