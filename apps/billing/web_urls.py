"""Portal pages of the billing app (the API's routes are in urls.py, under /api/v1/)."""

from django.urls import path

from apps.billing import views

app_name = "billing"
urlpatterns = [
    path("topup/", views.topup, name="topup"),
    path("topup/done", views.topup_done, name="topup_done"),
    path("limits/", views.spend_limits, name="limits"),
    path("transactions/", views.transactions, name="transactions"),
]
