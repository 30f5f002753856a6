"""The I/O side of tenancy: informers that list and watch the API server, and the index they
keep current (tenants, namespace ownership, the filtered objects). The rules they apply are the
pure `tenancy` package's."""
