"""GPU Cloud Orchestrator's Python SDK (`Client`) and `gco` command line (`gco.cli`)."""

from gco.client import ApiError, Client, GcoError, NetworkError, PodWaitError

__all__ = ["ApiError", "Client", "GcoError", "NetworkError", "PodWaitError"]
__version__ = "0.1.0"
