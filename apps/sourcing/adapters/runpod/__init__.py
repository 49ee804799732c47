from apps.sourcing.adapters.runpod.client import RunPodAdapter

__all__ = ["RunPodAdapter"]
