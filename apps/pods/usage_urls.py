"""The usage page, mounted at /billing/usage/ beside the billing pages (config/urls.py)."""

from django.urls import path

from apps.pods import usage_views

app_name = "usage"
urlpatterns = [path("", usage_views.usage, name="records")]
