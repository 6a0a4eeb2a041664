"""What keeps the demo alive around its seeded runs: `manage.py seed_demo` sets it up, and
`manage.py serve` prints how to use it.

- The logins: the demo users (one password) and a sandbox API key. Only the key's hash is in
  the database, so its secret is kept in VAR_DIR/demo-api-key (mode 0600, beside the embedded
  secret key) for the banner to print at every start.
- A cron trigger that starts a sandbox credit review every minute.
- An outbound webhook endpoint for sandbox runs, delivering to the app's own receiver
  (runs/webhook_receiver.py) at the address served, so every delivery succeeds on this machine.
- A sandbox connection for the http.request tool: credentials as admins keep them (encrypted,
  shown masked). No demo procedure calls that tool, so the demo still needs no network.
- An unreachable credit bureau, for as long as the seed needs a failure worth a Retry.
"""

import secrets
import socket
from contextlib import contextmanager

from django.conf import settings
from django.urls import reverse

from procedures.models import Connection, Environment, Procedure, Trigger, TriggerKind
from runs.api_keys import create_api_key, hash_key
from runs.models import ApiKey, WebhookEndpoint

DEMO_PASSWORD = "rapidfolio-demo"
# Every user the seed creates, with what the demo lets them do.
DEMO_LOGINS = {
    "operator": "starts, cancels and retries runs",
    "reviewer": "approves or rejects payments and supplier wires",
    "controller": "second approver; finance manager for escalated wires",
    "admin": "all of it, and Django admin (/admin/)",
}
API_KEY_NAME = "Demo backend (sandbox)"
API_KEY_FILE = "demo-api-key"
CRON_TRIGGER_NAME = "Credit review every minute (demo)"
RECEIVER_DESCRIPTION = "Demo receiver (this app, /hooks/demo-receiver/)"
SANDBOX_CONNECTION_NAME = "Partner API (sandbox)"


# --- logins ---------------------------------------------------------------------------------
def api_key_path():
    return settings.VAR_DIR / API_KEY_FILE


def ensure_api_key(created_by) -> str:
    """The demo's sandbox API key: the one on file while it is active, else a new one."""
    raw_key = demo_api_key()
    if raw_key is not None:
        return raw_key
    _, raw_key = create_api_key(
        name=API_KEY_NAME, environment=Environment.SANDBOX, created_by=created_by
    )
    path = api_key_path()
    path.write_text(raw_key + "\n")
    path.chmod(0o600)
    return raw_key


def demo_api_key() -> str | None:
    """The key on file, if it is an active key of this database."""
    try:
        raw_key = api_key_path().read_text().strip()
    except OSError:
        return None
    active = ApiKey.objects.filter(key_hash=hash_key(raw_key), revoked_at__isnull=True)
    return raw_key if raw_key and active.exists() else None


def login_lines(users) -> list[str]:
    """How to sign in to this demo, given the demo users that exist (usernames)."""
    present = [name for name in DEMO_LOGINS if name in set(users)]
    if not present:
        return ["no demo logins yet: `manage.py seed_demo` creates them"]
    width = max(len(name) for name in present)
    lines = [f"log in with password {DEMO_PASSWORD} as:"]
    lines += [f"  {name.ljust(width)}  {DEMO_LOGINS[name]}" for name in present]
    raw_key = demo_api_key()
    if raw_key is not None:
        lines.append(f"API key (sandbox): {raw_key}")
        lines.append(f"  (kept in {api_key_path()}; send it as Authorization: Bearer <key>)")
    return lines


# --- what runs by itself ----------------------------------------------------------------------
def ensure_cron_trigger(procedure: Procedure) -> Trigger:
    """A sandbox credit review every minute: the scheduler starts it (cron, UTC)."""
    trigger, _ = Trigger.objects.get_or_create(
        name=CRON_TRIGGER_NAME,
        kind=TriggerKind.CRON,
        defaults={
            "procedure": procedure,
            "environment": Environment.SANDBOX,
            "cron_expression": "* * * * *",
            "timezone": "UTC",
            "cron_inputs": {
                "customer_id": "cust_monarch",
                "email": "treasury@monarch.example",
                "requested_amount": 400000,
                "currency": "USD",
            },
        },
    )
    return trigger


def ensure_webhook_endpoint(served_at: str) -> WebhookEndpoint:
    """The sandbox endpoint delivering every run event to this app's receiver at `served_at`
    (kept pointed there: `make run PORT=8400` seeds again with that port)."""
    url = served_at.rstrip("/") + reverse("demo_webhook_receiver")
    endpoint = WebhookEndpoint.objects.filter(description=RECEIVER_DESCRIPTION).first()
    if endpoint is None:
        endpoint = WebhookEndpoint(
            description=RECEIVER_DESCRIPTION,
            environment=Environment.SANDBOX,
            events=list(WebhookEndpoint.EventType.values),
        )
        endpoint.set_secret(secrets.token_urlsafe(32))
    if endpoint.url != url:
        endpoint.url = url
        endpoint.save()
    return endpoint


def ensure_sandbox_connection() -> Connection:
    connection, created = Connection.objects.get_or_create(
        integration="http",
        environment=Environment.SANDBOX,
        defaults={
            "name": SANDBOX_CONNECTION_NAME,
            # The token is only ever sent to URLs under base_url (procedures/tools/http.py).
            "config": {"base_url": "https://sandbox.partner.example/"},
        },
    )
    if created:
        connection.set_secret("demo-sandbox-token-" + secrets.token_hex(8))
        connection.save()
    return connection


@contextmanager
def unreachable_credit_bureau():
    """Inside, sandbox credit checks go to a bureau test system that refuses connections (a
    closed port of this machine): a transient failure, retried, then failed. Leaving removes
    that connection, so the simulator answers again and a Retry of those runs succeeds."""
    connection = Connection.objects.create(
        integration="credit",
        environment=Environment.SANDBOX,
        name="Credit bureau test system (down)",
        config={"base_url": f"http://127.0.0.1:{_closed_port()}"},
    )
    try:
        yield
    finally:
        connection.delete()


def _closed_port() -> int:
    # A port the system just handed out and nobody listens on.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
