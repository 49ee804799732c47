from django.contrib import admin

from apps.webhooks.models import SentNotification, WebhookDelivery, WebhookEndpoint


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ("url", "user", "created_at", "disabled_at")
    search_fields = ("url", "user__email")
    readonly_fields = ("secret_salt", "secret_prefix")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ("event", "endpoint", "status", "attempts", "next_attempt_at", "created_at")
    list_filter = ("status",)
    list_select_related = ("event", "endpoint")


@admin.register(SentNotification)
class SentNotificationAdmin(admin.ModelAdmin):
    list_display = ("key", "user", "subject", "sent_at")
    search_fields = ("key", "user__email")
