"""Pure rewriting of API responses for a tenant: no I/O."""
