"""Kubernetes vocabulary: resource names, label selectors, line framing. Imports nothing else of
the project (an import-linter contract says so), so every layer above may use it."""
