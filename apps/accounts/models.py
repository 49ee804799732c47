import uuid
from typing import Any, ClassVar, cast

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.utils import timezone


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create(self, email: str, password: str | None, **extra: Any) -> "User":
        if not email:
            raise ValueError("An email address is required.")
        user = cast("User", self.model(email=self.normalize_email(email).lower(), **extra))
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> "User":
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> "User":
        extra.update(is_staff=True, is_superuser=True)
        return self._create(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A person with one account and one balance. Logs in with an email address; the primary
    key is a UUID so ids in URLs reveal nothing about how many users there are."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField(unique=True)
    name = models.CharField(max_length=150, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)

    objects: ClassVar[UserManager] = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        ordering = ("email",)

    def __str__(self) -> str:
        return self.email


class ApiKeyScope(models.TextChoices):
    """What a personal API key may do. `read` allows every safe (GET/HEAD/OPTIONS) request;
    each other scope allows reads and writes of its own area of the API."""

    READ = "read", "Read anything"
    PODS = "pods", "Pods, volumes, nodes"
    MODELS = "models", "Model deployments"
    BILLING = "billing", "Billing and payouts"


def all_scopes() -> list[str]:
    """A new key's scopes unless asked otherwise, and every key's from before scopes existed."""
    return [scope.value for scope in ApiKeyScope]


class ApiKeyQuerySet(models.QuerySet):
    def active(self) -> "ApiKeyQuerySet":
        return self.filter(revoked_at__isnull=True)

    def for_user(self, user: User) -> "ApiKeyQuerySet":
        return self.filter(user=user)


class ApiKey(models.Model):
    """A personal API key (`gco_…`). Only its SHA-256 digest is stored; the raw key is shown
    once when it is created. Revoking keeps the row for the audit trail."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=20)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    scopes = models.JSONField(default=all_scopes, help_text="Subset of ApiKeyScope values.")
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Requests after this get 401; empty: never expires."
    )

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ("-created_at",)
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and not self.is_expired

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def has_full_access(self) -> bool:
        return set(all_scopes()) <= set(self.scopes)


class SshKey(models.Model):
    """A public key a user keeps in their account; every pod they start gets all of them in
    PUBLIC_KEY and /root/.ssh/authorized_keys."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="ssh_keys")
    name = models.CharField(max_length=100)
    public_key = models.TextField()
    fingerprint = models.CharField(max_length=64)  # SHA256:<base64>, as ssh-keygen -l shows
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("created_at",)
        constraints = [
            models.UniqueConstraint(fields=["user", "fingerprint"], name="sshkey_unique_per_user")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.fingerprint})"
