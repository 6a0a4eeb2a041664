"""The few helpers every dashboard view shares (the apps' views import them; this imports no app).

HTMX asks for part of a page (`request.htmx`); the same URL answers a plain GET, a history
restore or a bookmark with the whole page, so every swap is also a deep link.
"""

from django.shortcuts import redirect, render
from django.utils.cache import patch_vary_headers
from django_htmx.http import HttpResponseClientRedirect, reswap, retarget


def is_swap(request) -> bool:
    """True when HTMX asks for a fragment (a history restore needs the whole page)."""
    return bool(request.htmx) and not request.htmx.history_restore_request


def render_page(request, template: str, context: dict, *, partial: str | None, status=200):
    """Render `template`, or only its `partial` when HTMX asks for a swap.

    A partial knows it is one (`partial_swap`), so it can carry the page's <title>: htmx sets
    document.title from a <title> in any response, so the tab's title follows what is shown.
    """
    swap = bool(partial) and is_swap(request)
    name = f"{template}#{partial}" if swap else template
    response = render(request, name, {**context, "partial_swap": swap}, status=status)
    # The fragment and the whole page share a URL: caches must keep them apart.
    patch_vary_headers(response, ["HX-Request"])
    return response


def navigate(request, url: str):
    """After an action that made a new page (a new run): go there as a whole page.

    For HTMX, HX-Redirect: the browser loads `url` itself, with the site's header, the page's
    title and the messages queued for it, shown there once. Without JavaScript, a 302.
    """
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


def forbidden(request, reason: str):
    """The 403 page that says why; for an HTMX request, only the reason, shown above the page."""
    if is_swap(request):
        response = render(request, "403.html#reason", {"exception": reason}, status=403)
        return reswap(retarget(response, "#flash"), "innerHTML")
    return render(request, "403.html", {"exception": reason}, status=403)
