"""The status enums in every page's context, so templates compare against them
(`pod.status == PodStatus.RUNNING`) instead of bare strings that a renamed status would
silently stop matching."""

from typing import Any

from django.http import HttpRequest

from apps.catalog.models import DeploymentStatus
from apps.nodes.models import CommandStatus, NodeStatus
from apps.pods.models import PodStatus, VolumeStatus


def status_enums(request: HttpRequest) -> dict[str, Any]:
    return {
        "CommandStatus": CommandStatus,
        "DeploymentStatus": DeploymentStatus,
        "NodeStatus": NodeStatus,
        "PodStatus": PodStatus,
        "VolumeStatus": VolumeStatus,
    }
