from apps.sourcing.adapters.vast_ai.client import VastAiAdapter

__all__ = ["VastAiAdapter"]
