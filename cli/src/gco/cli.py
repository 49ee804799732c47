"""`gco`: the command line. Tables by default, `--json` for scripts; exit codes scripts can
test (EXIT_* below); errors on stderr with the server's message."""

from __future__ import annotations

import json
import shlex
import socket
import sys
import time
import webbrowser
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
from pydantic import BaseModel

from gco import config
from gco.client import ApiError, Client, NetworkError, PodWaitError
from gco.models import Pod

EXIT_OK = 0
EXIT_USAGE = 2  # bad command line (click's own code for usage errors)
EXIT_NOT_LOGGED_IN = 3  # no API key: run `gco login` or set GCO_API_KEY
EXIT_CLIENT_ERROR = 4  # the server answered 4xx (its message is on stderr)
EXIT_SERVER_ERROR = 5  # the server answered 5xx, or could not be reached
EXIT_POD_NOT_RUNNING = 6  # `pods create` waited and the pod failed, stopped or timed out
EXIT_INTERRUPTED = 130

F = TypeVar("F", bound=Callable[..., Any])


class NotLoggedIn(click.ClickException):
    exit_code = EXIT_NOT_LOGGED_IN


# -- output ---------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def emit_json(value: Any) -> None:
    click.echo(json.dumps(_plain(value), indent=2))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def emit_table(rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> None:
    cells = [[_cell(v) for v in row] for row in rows]
    if not cells:
        click.echo("(none)")
        return
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    click.echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def emit_fields(pairs: Sequence[tuple[str, Any]]) -> None:
    width = max(len(k) for k, _ in pairs)
    for key, value in pairs:
        click.echo(f"{key.ljust(width)}  {_cell(value)}")


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")(func)


# -- the client from the context ------------------------------------------------------------


def client_from(ctx: click.Context, *, need_key: bool = True) -> Client:
    obj = ctx.find_root().obj or {}
    client = Client(api_url=obj.get("api_url"))
    if need_key and not client.api_key:
        raise NotLoggedIn("not logged in: run `gco login`, or set GCO_API_KEY.")
    ctx.call_on_close(client.close)
    return client


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--api-url", envvar="GCO_API_URL", help="The server (default: the stored one).")
@click.version_option(package_name="gco-cli", prog_name="gco")
@click.pass_context
def cli(ctx: click.Context, api_url: str | None) -> None:
    """GPU Cloud Orchestrator: rent GPUs, run pods, deploy models.

    Exit codes: 0 ok, 2 usage, 3 not logged in, 4 the server refused the request (4xx),
    5 server error or unreachable, 6 a pod did not reach RUNNING."""
    ctx.obj = {"api_url": api_url}


# -- login ----------------------------------------------------------------------------------


def _read_secret(label: str) -> str:
    """Hidden prompt on a terminal; one line of stdin otherwise (scripts pipe the key in, so it
    never appears on a command line or in the shell's history)."""
    if sys.stdin.isatty():
        return str(click.prompt(label, hide_input=True)).strip()
    return sys.stdin.readline().strip()


@cli.command()
@click.option("--email", help="Log in with email and password; a new API key is created.")
@click.option("--key-name", default=None, help="Name of the key --email creates.")
@click.pass_context
def login(ctx: click.Context, email: str | None, key_name: str | None) -> None:
    """Store an API key (read at a prompt or from stdin) in the config file, mode 0600."""
    url = config.resolve(api_url=ctx.obj.get("api_url")).api_url
    if email:
        password = _read_secret("Password")
        with Client(api_url=url, anonymous=True) as anonymous:
            token = anonymous.login(email, password)
        with Client(api_key=token.access_token, api_url=url) as session:
            created = session.keys.create(key_name or f"gco-cli on {socket.gethostname()}"[:100])
        key = created.key
    else:
        key = _read_secret("API key")
        if not key:
            raise click.UsageError("no API key given (paste one, or use --email)")
    with Client(api_key=key, api_url=url) as client:
        me = client.me()  # the key works before it is stored
    path = config.save(api_url=url, api_key=key)
    click.echo(f"Logged in to {url} as {me.email}; key stored in {path}")


# -- GPUs and money -------------------------------------------------------------------------


@cli.command()
@json_option
@click.pass_context
def gpus(ctx: click.Context, as_json: bool) -> None:
    """The price list: GPU models free now, per GPU-hour."""
    listed = client_from(ctx).gpus()
    if as_json:
        return emit_json(listed)
    emit_table(
        (
            (
                g.gpu_model,
                f"{g.vram_mb // 1024} GB",
                g.free_gpus,
                g.price_per_gpu_hour_usd,
                g.source,
                g.provider,
            )
            for g in listed
        ),
        ("gpu", "vram", "free", "usd/gpu-h", "source", "provider"),
    )


@cli.command()
@json_option
@click.pass_context
def balance(ctx: click.Context, as_json: bool) -> None:
    """Your prepaid balance."""
    got = client_from(ctx).balance()
    if as_json:
        return emit_json(got)
    click.echo(f"{got.balance_usd} {got.currency}")


@cli.command()
@click.argument("amount_usd")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in a browser.")
@click.option("--idempotency-key", help="Retry with the same key to get the same page.")
@json_option
@click.pass_context
def topup(
    ctx: click.Context,
    amount_usd: str,
    open_browser: bool,
    idempotency_key: str | None,
    as_json: bool,
) -> None:
    """Add AMOUNT_USD (e.g. 25.00) to the balance: prints the Stripe Checkout page to pay on.
    The credit arrives once the payment is confirmed."""
    deposit = client_from(ctx).deposit(amount_usd, idempotency_key=idempotency_key)
    if as_json:
        emit_json(deposit)
    else:
        click.echo(deposit.checkout_url)
    if open_browser:
        webbrowser.open(deposit.checkout_url)


# -- pods -----------------------------------------------------------------------------------

POD_COLUMNS = ("id", "name", "status", "gpu", "count", "usd/gpu-h", "created")


def _pod_row(p: Pod) -> tuple[Any, ...]:
    return (
        p.id,
        p.name,
        p.status,
        p.gpu_model,
        p.gpu_count,
        p.price_per_gpu_hour_usd,
        p.created_at,
    )


def _show_pod(p: Pod) -> None:
    emit_fields(
        [
            ("id", p.id),
            ("name", p.name),
            ("status", p.status + (f" ({p.status_reason})" if p.status_reason else "")),
            ("image", p.image),
            ("gpu", f"{p.gpu_count} x {p.gpu_model}"),
            ("usd/gpu-h", p.price_per_gpu_hour_usd),
            ("node", (p.node or {}).get("hostname") if p.node else None),
            ("ssh", p.ssh_command),
            ("created", p.created_at),
            ("started", p.started_at),
            ("stopped", p.stopped_at),
        ]
    )


class Progress:
    """Status while a pod starts, on stderr: a line per change; on a terminal, a spinner."""

    FRAMES = "|/-\\"

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.last: str | None = None
        self.tty = sys.stderr.isatty()
        self.tick = 0

    def __call__(self, pod: Pod) -> None:
        elapsed = time.monotonic() - self.start
        text = pod.status + (f" ({pod.status_reason})" if pod.status_reason else "")
        if self.tty:
            self.tick += 1
            frame = self.FRAMES[self.tick % len(self.FRAMES)]
            click.echo(f"\r{frame} {text}  {elapsed:4.0f}s\033[K", err=True, nl=False)
        elif text != self.last:
            click.echo(f"[{elapsed:4.0f}s] pod {pod.id}: {text}", err=True)
        self.last = text

    def done(self) -> None:
        if self.tty:
            click.echo("", err=True)


@cli.group()
def pods() -> None:
    """Containers on rented GPUs."""


def _parse_env(pairs: Sequence[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--env")
        env[key] = value
    return env


@pods.command("create")
@click.option("--name", required=True)
@click.option("--image", required=True, help="Container image, e.g. pytorch/pytorch.")
@click.option("--gpu", "gpu_model", required=True, help='GPU model from `gco gpus` ("CPU": none).')
@click.option("--count", "gpu_count", type=int, default=1, show_default=True, help="GPUs.")
@click.option("--command", "command", help="The container's command (a shell-quoted line).")
@click.option("--env", "env", multiple=True, metavar="KEY=VALUE")
@click.option("--port", "ports", multiple=True, type=click.IntRange(1, 65535))
@click.option("--price-cap", help="Most USD per GPU-hour you accept, e.g. 3.00.")
@click.option("--cloud", type=click.Choice(["own", "upstream", "any"]))
@click.option("--template", help="A pod template's id.")
@click.option("--idempotency-key", help="Retry with the same key: the same pod, never two.")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until RUNNING.")
@click.option("--timeout", type=float, default=600, show_default=True, help="Seconds to wait.")
@json_option
@click.pass_context
def pods_create(
    ctx: click.Context,
    name: str,
    image: str,
    gpu_model: str,
    gpu_count: int,
    command: str | None,
    env: tuple[str, ...],
    ports: tuple[int, ...],
    price_cap: str | None,
    cloud: str | None,
    template: str | None,
    idempotency_key: str | None,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Start a pod and (by default) wait until it runs."""
    client = client_from(ctx)
    pod = client.pods.create(
        idempotency_key=idempotency_key,
        name=name,
        image=image,
        gpu_model=gpu_model,
        gpu_count=gpu_count,
        command=shlex.split(command) if command else None,
        env=_parse_env(env) or None,
        ports=[{"container_port": p} for p in ports] or None,
        price_cap_per_gpu_hour_usd=price_cap,
        cloud=cloud,
        template=template,
    )
    if wait:
        progress = Progress()
        try:
            pod = client.pods.wait(pod.id, timeout=timeout, on_status=progress)
        finally:
            progress.done()
    if as_json:
        return emit_json(pod)
    _show_pod(pod)


@pods.command("list")
@json_option
@click.pass_context
def pods_list(ctx: click.Context, as_json: bool) -> None:
    """Your pods, newest first."""
    listed = client_from(ctx).pods.list()
    if as_json:
        return emit_json(listed)
    emit_table((_pod_row(p) for p in listed), POD_COLUMNS)


@pods.command("get")
@click.argument("pod_id")
@json_option
@click.pass_context
def pods_get(ctx: click.Context, pod_id: str, as_json: bool) -> None:
    """One pod."""
    pod = client_from(ctx).pods.get(pod_id)
    if as_json:
        return emit_json(pod)
    _show_pod(pod)


def _new_lines(before: list[str], now: list[str]) -> list[str]:
    """The lines of `now` after the longest overlap of `before`'s end with `now`'s start
    (each poll reads the log's last lines again)."""
    for k in range(min(len(before), len(now)), 0, -1):
        if before[-k:] == now[:k]:
            return now[k:]
    return now


@pods.command("logs")
@click.argument("pod_id")
@click.option("--tail", type=click.IntRange(1, 5000), default=200, show_default=True)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the pod ends.")
@click.option("--interval", type=float, default=2.0, show_default=True, hidden=True)
@json_option
@click.pass_context
def pods_logs(
    ctx: click.Context, pod_id: str, tail: int, follow: bool, interval: float, as_json: bool
) -> None:
    """A pod's container output (the last --tail lines)."""
    client = client_from(ctx)
    got = client.pods.logs(pod_id, tail=tail)
    if as_json and not follow:
        return emit_json(got)
    if got.unavailable:
        click.echo(f"logs unavailable: {got.unavailable}", err=True)
    seen = got.logs.splitlines()
    for line in seen:
        click.echo(json.dumps({"line": line}) if as_json else line)
    while follow:
        time.sleep(interval)  # polling the server, not synchronising
        if client.pods.get(pod_id).status not in ("RUNNING", "STARTING", "SCHEDULED"):
            return
        try:
            now = client.pods.logs(pod_id, tail=tail).logs.splitlines()
        except ApiError as exc:
            if exc.status == 400:  # the container is gone: the pod ended meanwhile
                return
            raise
        for line in _new_lines(seen, now):
            click.echo(json.dumps({"line": line}) if as_json else line)
        seen = now


@pods.command("stop")
@click.argument("pod_id")
@json_option
@click.pass_context
def pods_stop(ctx: click.Context, pod_id: str, as_json: bool) -> None:
    """Stop a pod (billing stops with it)."""
    pod = client_from(ctx).pods.stop(pod_id)
    if as_json:
        return emit_json(pod)
    click.echo(f"{pod.id} {pod.status}")


@pods.command("rm")
@click.argument("pod_id")
@json_option
@click.pass_context
def pods_rm(ctx: click.Context, pod_id: str, as_json: bool) -> None:
    """Delete a pod (stops it first if it runs)."""
    pod = client_from(ctx).pods.delete(pod_id)
    if as_json:
        return emit_json(pod)
    click.echo(f"{pod.id} {pod.status}")


# -- models ---------------------------------------------------------------------------------


@cli.group()
def models() -> None:
    """One-click model deployments behind the OpenAI-compatible API."""


@models.command("list")
@click.option("--category", help="llm, embedding, speech-to-text, …")
@click.option("--search")
@json_option
@click.pass_context
def models_list(
    ctx: click.Context, category: str | None, search: str | None, as_json: bool
) -> None:
    """The model catalog."""
    listed = client_from(ctx).models.list(category=category, search=search)
    if as_json:
        return emit_json(listed)
    emit_table(
        ((m.slug, m.category, m.served_model, m.recommended_gpu, m.min_vram_gb) for m in listed),
        ("slug", "category", "model", "gpu", "min vram gb"),
    )


@models.command("deployments")
@json_option
@click.pass_context
def models_deployments(ctx: click.Context, as_json: bool) -> None:
    """Your deployments."""
    listed = client_from(ctx).models.deployments()
    if as_json:
        return emit_json(listed)
    emit_table(
        ((d.id, d.name, d.template, d.status, d.gpu_model, d.replicas) for d in listed),
        ("id", "name", "model", "status", "gpu", "replicas"),
    )


@models.command("deploy")
@click.argument("slug")
@click.option("--gpu", "gpu_model", help="GPU model (default: the model's recommendation).")
@click.option("--count", "gpu_count", type=int, help="GPUs per replica.")
@click.option("--replicas", type=int)
@click.option("--name")
@click.option("--price-cap", help="Most USD per GPU-hour you accept.")
@json_option
@click.pass_context
def models_deploy(
    ctx: click.Context,
    slug: str,
    gpu_model: str | None,
    gpu_count: int | None,
    replicas: int | None,
    name: str | None,
    price_cap: str | None,
    as_json: bool,
) -> None:
    """Deploy a catalog model; prints its API key (sk_…) once."""
    created = client_from(ctx).models.deploy(
        slug,
        gpu_model=gpu_model,
        gpu_count=gpu_count,
        replicas=replicas,
        name=name,
        price_cap_per_gpu_hour_usd=price_cap,
    )
    if as_json:
        return emit_json(created)
    emit_fields(
        [
            ("id", created.id),
            ("name", created.name),
            ("status", created.status),
            ("gpu", f"{created.gpu_count} x {created.gpu_model}"),
            ("api key", f"{created.api_key}   (shown once)"),
        ]
    )


@models.command("rm")
@click.argument("deployment_id")
@json_option
@click.pass_context
def models_rm(ctx: click.Context, deployment_id: str, as_json: bool) -> None:
    """Stop and remove a deployment."""
    got = client_from(ctx).models.delete(deployment_id)
    if as_json:
        return emit_json(got)
    click.echo(f"{got.id} {got.status}")


# -- API keys -------------------------------------------------------------------------------


@cli.group(invoke_without_command=True)
@json_option
@click.pass_context
def keys(ctx: click.Context, as_json: bool) -> None:
    """Your API keys (`gco keys` lists them)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(keys_list, as_json=as_json)


@keys.command("list")
@json_option
@click.pass_context
def keys_list(ctx: click.Context, as_json: bool) -> None:
    """List keys (their prefixes; secrets are never shown again)."""
    listed = client_from(ctx).keys.list()
    if as_json:
        return emit_json(listed)
    emit_table(
        (
            (k.id, k.name, k.prefix, ",".join(k.scopes), k.expires_at, k.last_used_at, k.revoked_at)
            for k in listed
        ),
        ("id", "name", "prefix", "scopes", "expires", "last used", "revoked"),
    )


@keys.command("create")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(["read", "pods", "models", "billing"]),
    help="What the key may do (repeat it); every scope when none is given.",
)
@click.option(
    "--expires",
    type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
    help="When the key stops working (UTC); never when not given.",
)
@json_option
@click.pass_context
def keys_create(
    ctx: click.Context,
    name: str,
    scopes: tuple[str, ...],
    expires: datetime | None,
    as_json: bool,
) -> None:
    """Create a key; its secret is printed this once."""
    expires_at = expires.replace(tzinfo=UTC) if expires else None
    created = client_from(ctx).keys.create(name, scopes=scopes or None, expires_at=expires_at)
    if as_json:
        return emit_json(created)
    click.echo(created.key)
    click.echo(f"(key {created.id} '{created.name}': shown once, store it now)", err=True)


@keys.command("revoke")
@click.argument("key_id")
@click.pass_context
def keys_revoke(ctx: click.Context, key_id: str) -> None:
    """Revoke a key: it stops working at once."""
    client_from(ctx).keys.revoke(key_id)
    click.echo(f"{key_id} revoked")


# -- entry point ----------------------------------------------------------------------------


def _report(exc: ApiError) -> None:
    click.echo(f"gco: error {exc.status} {exc.code}: {exc.message}", err=True)
    for field, problem in exc.fields.items():
        click.echo(f"  {field}: {problem}", err=True)


def main(argv: Sequence[str] | None = None) -> None:
    try:
        code = cli.main(args=argv, prog_name="gco", standalone_mode=False)
    except click.UsageError as exc:
        exc.show()
        sys.exit(EXIT_USAGE)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except ApiError as exc:
        _report(exc)
        sys.exit(EXIT_CLIENT_ERROR if exc.is_client_error else EXIT_SERVER_ERROR)
    except NetworkError as exc:
        click.echo(f"gco: {exc}", err=True)
        sys.exit(EXIT_SERVER_ERROR)
    except PodWaitError as exc:
        click.echo(f"gco: {exc}", err=True)
        sys.exit(EXIT_POD_NOT_RUNNING)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except config.ConfigError as exc:
        click.echo(f"gco: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    sys.exit(code if isinstance(code, int) else EXIT_OK)
