from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "apps.catalog"
    label = "catalog"
    verbose_name = "Model catalog"

    def ready(self) -> None:
        from apps.catalog import receivers  # noqa: F401 - follows the replicas' pods
