"""Portal pages that compose several apps (each app's own pages are in its web_urls.py)."""

from django.urls import path

from apps.portal import views

app_name = "portal"
urlpatterns = [
    path("dashboard/", views.dashboard, name="dashboard"),
]
