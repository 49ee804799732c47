from django.apps import AppConfig


class NodesConfig(AppConfig):
    name = "apps.nodes"
    label = "nodes"
    verbose_name = "GPU hosts"

    def ready(self) -> None:
        from apps.nodes import schema  # noqa: F401 - registers the OpenAPI auth scheme
