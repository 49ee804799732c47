"""Writes for the catalog, by topic: `deploy` (deploy, stop, keys), `lifecycle` (provisioning,
pod sync, health checks, deployment status)."""
