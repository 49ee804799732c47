"""`{{ micros|usd }}` → "2.49"; `{{ micros|usd:6 }}` → "2.490000"."""

from django import template

from apps.core.money import micros_to_usd

register = template.Library()


@register.filter
def usd(micros: int | None, places: int = 2) -> str:
    if micros is None:
        return ""
    return micros_to_usd(int(micros), places=int(places))
