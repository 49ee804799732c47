"""Celery app. The periodic schedule lives in `apps.core.schedule` and is synced into
django-celery-beat's database scheduler by `manage.py sync_schedule`."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("gco")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
