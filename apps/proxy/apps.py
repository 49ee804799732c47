import atexit
import logging

from django.apps import AppConfig

logger = logging.getLogger(__name__)


class ProxyConfig(AppConfig):
    name = "apps.proxy"
    label = "proxy"
    verbose_name = "OpenAI-compatible proxy"

    def ready(self) -> None:
        atexit.register(_flush_usage_at_exit)


def _flush_usage_at_exit() -> None:
    """A web process that stops cleanly (deploys, SIGTERM) writes the usage it still holds."""
    from apps.proxy.routing import usage_buffer

    held = usage_buffer.pending()
    if not held:
        return
    try:
        usage_buffer.flush_sync()
    except Exception as exc:  # the database may be gone already; nothing else to do at exit
        logger.error("proxy: %d usage rows lost at exit: %s", held, exc)
