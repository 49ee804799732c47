from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "apps.webhooks"
    label = "webhooks"
    verbose_name = "Webhooks and notifications"

    def ready(self) -> None:
        from apps.webhooks import receivers  # noqa: F401 - connects the signal receivers
