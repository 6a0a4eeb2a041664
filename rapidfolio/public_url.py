"""The address our absolute URLs start with: API answers' `url` and `dashboard_url`, the run
link in a webhook's body, the demo's own webhook receiver.

PUBLIC_BASE_URL, when set, wins: it is the address clients use (behind a proxy, its public one).
Unset, an answer to a request uses the address that request came to: its scheme and its Host,
which Django has checked against ALLOWED_HOSTS, so `make run PORT=8400` answers with :8400.
What is built outside any request (a webhook's body, by a worker) uses the address
`manage.py serve` serves in this process, else DEFAULT_BASE_URL.
"""

from django.conf import settings

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
# Hosts a server listens on without being reachable at them: its clients on this machine
# reach it at the loopback address.
WILDCARD_HOSTS = {"", "0.0.0.0", "::", "[::]"}

_served_base_url: str | None = None


def base_url(request=None) -> str:
    """The base (scheme, host and port, no trailing slash) for absolute URLs."""
    if settings.PUBLIC_BASE_URL:
        return settings.PUBLIC_BASE_URL
    if request is not None:
        return f"{request.scheme}://{request.get_host()}"
    return _served_base_url or DEFAULT_BASE_URL


def local_base_url(host: str, port: int) -> str:
    """Where a process on this machine reaches a server listening on host:port."""
    host = "127.0.0.1" if host in WILDCARD_HOSTS else host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address
    return f"http://{host}:{port}"


def serving_at(url: str) -> None:
    """Called by `manage.py serve`: URLs built outside a request start with what it serves."""
    global _served_base_url
    _served_base_url = url.rstrip("/")
