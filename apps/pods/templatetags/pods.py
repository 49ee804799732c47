"""Template helpers for pod pages: how often to re-check a list or a pod, and its progress."""

import shlex
from collections.abc import Iterable

from django import template

from apps.pods.models import Pod
from apps.pods.selectors import PROGRESS, pod_is_settled, pod_is_transitioning, pod_offers
from apps.pods.ssh import ssh_command

register = template.Library()

# Milliseconds between checks: quick while something is on its way, slow while it just runs.
FAST_MS = 2000
SLOW_MS = 10000


@register.filter
def watch_interval(pods: Iterable[Pod]) -> int | str:
    """The poll interval for a page showing these pods; "" when none can change by itself."""
    pods = list(pods)
    if any(pod_is_transitioning(p) for p in pods):
        return FAST_MS
    if any(not pod_is_settled(p) for p in pods):
        return SLOW_MS
    return ""


@register.filter
def progress_step(pod: Pod) -> int:
    return PROGRESS.get(pod.status, 0)


@register.filter
def transitioning(pod: Pod) -> bool:
    return pod_is_transitioning(pod)


@register.filter
def watch_interval_one(pod: Pod) -> int | str:
    return watch_interval([pod])


@register.filter
def shell_join(command: list[str] | None) -> str:
    """A pod's command as one would type it: ["sh", "-c", "a; b"] → sh -c 'a; b'."""
    return shlex.join(command or [])


# Anonymous visitors read the landing page's price list from the cache, not the database.
OFFERS_CACHE_S = 15


@register.simple_tag
def public_offers() -> list[dict[str, object]]:
    """Free capacity and prices for the landing page (cached for OFFERS_CACHE_S)."""
    from django.core.cache import cache

    offers = cache.get_or_set(
        "portal:public-offers", lambda: [o.as_dict() for o in pod_offers()], OFFERS_CACHE_S
    )
    return offers or []


@register.filter
def ssh_line(pod: Pod) -> str:
    """`ssh root@HOST -p PORT` for a pod publishing 22/tcp, else ""."""
    return ssh_command(pod.endpoints) or ""


@register.filter
def vcpus(millicores: int) -> str:
    """1500 → "1.5"."""
    return f"{millicores / 1000:g}"
