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

    if not usage_buffer.pending():
        return
    try:
        usage_buffer.flush_sync()
    except Exception:  # the database may be gone already; nothing else to do at exit
        logger.exception("proxy: usage rows lost at exit")
