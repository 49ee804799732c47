from django.apps import AppConfig


class SourcingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "apps.sourcing"
    verbose_name = "Sourcing (upstream clouds)"

    def ready(self) -> None:
        from apps.sourcing import receivers  # noqa: F401 - connects the signal handlers
