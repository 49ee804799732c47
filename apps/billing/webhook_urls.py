from django.urls import path

from apps.billing.webhooks import stripe_webhook

urlpatterns = [
    path("stripe", stripe_webhook, name="stripe-webhook"),
]
