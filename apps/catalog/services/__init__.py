"""Writes for the catalog, by topic: `deploy` (deploy, stop, keys), `lifecycle` (the deployment
state machine and its derived status), `provisioning` (replicas as pods: provisioning them and
following their pods), `health` (health probes), `autoscale` and `scaling` (replica counts),
`templates` (the template list)."""
