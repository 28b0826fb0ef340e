"""Deployment manifests generated from the repository's sources: `python -m deploy` (Kubernetes)."""
