"""The admin's banner for an open fleet alert (the mass-silence guard, apps/nodes/sweep.py)."""

from typing import Any

from django import template

from apps.nodes.models import FleetAlert

register = template.Library()


@register.inclusion_tag("nodes/admin/fleet_alert_banner.html")
def fleet_alert_banner() -> dict[str, Any]:
    return {"alert": FleetAlert.objects.filter(ended_at__isnull=True).first()}
