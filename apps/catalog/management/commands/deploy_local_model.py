"""`manage.py deploy_local_model local-smollm2-135m --wait`: the demo's one step from a fresh
`make run` to an `sk_…` key that the `openai` SDK can use."""

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.accounts.models import User
from apps.billing.services import wallet_for
from apps.billing.services.operator import wallet_credit
from apps.catalog.models import DeploymentStatus, ModelTemplate
from apps.catalog.services import health, provisioning
from apps.catalog.services.deploy import deployment_create
from apps.catalog.services.templates import templates_seed
from apps.core.money import usd_to_micros
from apps.pods.services import SpendRefusedError

DEMO_CREDIT_USD = 5


class Command(BaseCommand):
    help = (
        "Deploy a catalog template (a local-* one runs on this machine's agent) for a user, "
        "print its API key once, and optionally wait until it is READY."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("slug", help="template, e.g. local-smollm2-135m or local-echo-test")
        parser.add_argument("--email", default="operator@example.com")
        parser.add_argument("--replicas", type=int, default=1)
        parser.add_argument(
            "--demo-credit",
            action="store_true",
            help=f"credit ${DEMO_CREDIT_USD} once (ledger, by the user as operator) if the "
            "wallet is empty; the user must be staff",
        )
        parser.add_argument("--wait", type=float, default=0, help="seconds to wait for READY")

    def handle(self, *args: Any, slug: str, email: str, **options: Any) -> None:
        templates_seed()
        user = User.objects.filter(email=email).first()
        if user is None:
            raise CommandError(f"no user {email} (make run creates operator@example.com)")
        template = ModelTemplate.objects.filter(slug=slug, is_active=True).first()
        if template is None:
            raise CommandError(f"no template {slug!r}: see GET /api/v1/models")
        if options["demo_credit"]:
            if not user.is_staff:
                raise CommandError("--demo-credit is for the staff demo operator only")
            if wallet_for(user).balance <= 0:
                wallet_credit(
                    user=user,
                    amount=usd_to_micros(DEMO_CREDIT_USD),
                    reason="demo credit for local model deployments",
                    operator=user,
                    idempotency_key=f"demo-credit:{user.pk}",
                )
        try:
            created = deployment_create(owner=user, template=template, replicas=options["replicas"])
        except SpendRefusedError as exc:
            raise CommandError(f"refused: {exc} (try --demo-credit)") from exc
        deployment = created.deployment
        self.stdout.write(f"deployment {deployment.pk} ({deployment.status})")
        self.stdout.write(f"model:   {deployment.model_name}")
        self.stdout.write(f"api key: {created.key.raw}   (shown only this once)")
        deadline = time.monotonic() + options["wait"]
        while time.monotonic() < deadline:
            # What beat does every 15-30 s, done here every second for a quick start.
            provisioning.deployments_sync_status()
            health.replicas_health_check()
            deployment.refresh_from_db()
            if deployment.status == DeploymentStatus.READY:
                break
            if deployment.status == DeploymentStatus.FAILED:
                raise CommandError(f"deployment failed: {deployment.status_reason}")
            time.sleep(1)
        self.stdout.write(f"status:  {deployment.status} {deployment.status_reason}")
