"""Django's admin, on our admin site (rapidfolio/admin_site.py).

Its own module: INSTALLED_APPS imports it before any model exists, and the site it names is
imported only when the admin first needs it, once the apps are ready.
"""

from django.contrib.admin.apps import AdminConfig as DjangoAdminConfig


class AdminConfig(DjangoAdminConfig):
    default_site = "rapidfolio.admin_site.AdminSite"
