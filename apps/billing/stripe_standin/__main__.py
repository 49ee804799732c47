"""Serve the Stripe Checkout stand-in until interrupted (`make run` does, as `stripe` in
Procfile.dev): `python -m apps.billing.stripe_standin --port 7810 --webhook-url
http://127.0.0.1:8000/webhooks/stripe`. The secret key and the webhook secret come from the
environment (STRIPE_STANDIN_SECRET_KEY, STRIPE_STANDIN_WEBHOOK_SECRET: `make run` generates
them once into var/stripe-standin.env), the same variables the server reads."""

import argparse
import logging
import os
import signal
import sys
import threading

from apps.billing.stripe_standin import RunningStandin


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m apps.billing.stripe_standin")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7810)
    parser.add_argument(
        "--webhook-url",
        default="http://127.0.0.1:8000/webhooks/stripe",
        help="where checkout.session.completed events are delivered",
    )
    parser.add_argument("--public-url", help="this server's address in checkout URLs")
    args = parser.parse_args()
    api_key = os.environ.get("STRIPE_STANDIN_SECRET_KEY", "")
    webhook_secret = os.environ.get("STRIPE_STANDIN_WEBHOOK_SECRET", "")
    if not api_key.startswith("sk_test_") or not webhook_secret.startswith("whsec_"):
        sys.exit(
            "STRIPE_STANDIN_SECRET_KEY (sk_test_…) and STRIPE_STANDIN_WEBHOOK_SECRET (whsec_…) "
            "must be set (make run generates them into var/stripe-standin.env)."
        )
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    running = RunningStandin(
        api_key=api_key,
        webhook_secret=webhook_secret,
        webhook_url=args.webhook_url,
        host=args.host,
        port=args.port,
        public_url=args.public_url,
    )
    print(f"stripe checkout stand-in: {running.url} → webhooks to {args.webhook_url}", flush=True)  # noqa: T201
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    running.stop()


if __name__ == "__main__":
    main()
