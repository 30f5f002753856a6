"""What the proxy tells its operators: `metrics` (Prometheus, one view over all workers),
`request_log` (one access line per request), `audit_trail` (the audit lines and
audit.k8s.io/v1 Events, under a policy) and `logs` (JSON lines, and where each logger writes).

Never a token, key or certificate body: only the fields these modules name are ever logged.
"""
