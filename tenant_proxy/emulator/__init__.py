"""In-memory kube-apiserver emulator for tests and the demo. Imports nothing of the proxy."""
