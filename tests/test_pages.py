"""The login page and the shell every page shares."""

from django.urls import reverse


def test_every_page_requires_login(client, db):
    response = client.get(reverse("home"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_login_page_renders_without_inline_script(client, db):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    body = response.content.decode()
    assert "<script>" not in body and "style=" not in body
    assert 'name="username"' in body


def test_csp_forbids_inline_script(client, db):
    csp = client.get(reverse("login")).headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp


def test_logged_in_user_sees_home(client, operator):
    client.force_login(operator)
    response = client.get(reverse("home"))
    assert response.status_code == 200
    assert "olivia" in response.content.decode()


def test_htmx_is_served_from_our_own_static_files(client, db):
    body = client.get(reverse("login")).content.decode()
    assert "/static/vendor/htmx.min.js" in body
    assert "https://" not in body.split("<body")[0]
