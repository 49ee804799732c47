from django.apps import AppConfig


class PodConnectConfig(AppConfig):
    """Ways into a running pod: the browser terminal and the HTTP port proxy."""

    name = "apps.podconnect"
    label = "podconnect"
    verbose_name = "Pod connections"

    def ready(self) -> None:
        from apps.podconnect import receivers  # noqa: F401 - listens to the nodes app's signals
