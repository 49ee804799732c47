from django.apps import AppConfig


class PodsConfig(AppConfig):
    name = "apps.pods"
    label = "pods"
    verbose_name = "Pods"

    def ready(self) -> None:
        from apps.pods import receivers  # noqa: F401 - listens to the nodes app's signals
