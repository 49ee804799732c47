import secrets
from typing import Any

from django.core.management.base import BaseCommand

from apps.accounts.models import User

DEMO_OPERATOR_EMAIL = "operator@example.com"


class Command(BaseCommand):
    help = "Create the demo operator account (staff, verified email) and print its login once."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--email", default=DEMO_OPERATOR_EMAIL)

    def handle(self, *args: Any, email: str, **options: Any) -> None:
        from allauth.account.models import EmailAddress

        if User.objects.filter(email=email).exists():
            self.stdout.write(f"demo operator {email} exists (its password was printed once).")
            return
        password = secrets.token_urlsafe(12)
        user = User.objects.create_superuser(email=email, password=password, name="Demo operator")
        EmailAddress.objects.create(user=user, email=email, primary=True, verified=True)
        self.stdout.write(
            self.style.SUCCESS(
                f"\n  Demo operator created. Log in at /accounts/login/ or /admin/ with\n"
                f"    email:    {email}\n    password: {password}\n  (shown only this once)\n"
            )
        )
