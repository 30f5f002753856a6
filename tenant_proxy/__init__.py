"""tenant-proxy: tenant-aware reverse proxy for kube-apiserver."""
