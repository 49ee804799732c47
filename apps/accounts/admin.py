from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.http import HttpRequest

from apps.accounts.models import ApiKey, SshKey, User
from apps.accounts.services import api_key_revoke


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    fields = ("name", "prefix", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    """Users, their permissions and API keys. (Billing re-registers it with the wallet's
    balance and its credit and refund forms: accounts sits below billing and never imports
    it.)"""

    ordering = ("email",)
    list_display = ("email", "name", "is_staff", "is_active", "date_joined")
    search_fields = ("email", "name")
    list_filter = ("is_staff", "is_superuser", "is_active")
    fieldsets = (
        (None, {"fields": ("email", "password", "name")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)
    inlines = (ApiKeyInline,)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "user", "created_at", "last_used_at", "revoked_at")
    search_fields = ("name", "prefix", "user__email")
    list_filter = ("revoked_at",)
    readonly_fields = (
        "user",
        "name",
        "prefix",
        "digest",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    actions = ("revoke",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # keys are created by their owner, who must see the raw key once

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # revoke instead: the row stays for the audit trail

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset):
        for api_key in queryset:
            api_key_revoke(api_key=api_key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).")


@admin.register(SshKey)
class SshKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "user", "fingerprint", "created_at")
    search_fields = ("name", "fingerprint", "user__email")
    list_select_related = ("user",)
    readonly_fields = ("user", "name", "public_key", "fingerprint", "created_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # users add their own keys
