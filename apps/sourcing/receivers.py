"""The sourcing app listens to agent registrations."""

from typing import Any

from django.dispatch import receiver

from apps.nodes import signals
from apps.sourcing import services


@receiver(signals.node_registered)
def _node_registered(sender: Any, node: Any, grant: Any, **kwargs: Any) -> None:
    services.instance_activate(node=node)
