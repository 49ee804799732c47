from django.apps import AppConfig


class PortalConfig(AppConfig):
    """Pages that compose several apps (the customer dashboard, the `/metrics` scrape). The top
    layer: it may import any app, and no app imports it. It has no models."""

    name = "apps.portal"
    label = "portal"
    verbose_name = "Portal"
