"""The product's roles as Django groups with permissions.

Operators start, cancel and retry runs; Reviewers decide reviews; admins are staff users with
Django admin. `ensure_roles()` runs after every migrate, so the groups always exist.

Both roles see sandbox runs only. The live environment is granted on its own, by adding a user
to "Live environment" as well (runs.view_live_run): they then see live runs and may do in live
what their other role lets them do in sandbox (start, cancel, retry, decide). A user in no group
sees no run at all.
"""

from django.contrib.auth.models import Group, Permission

OPERATORS = "Operators"
REVIEWERS = "Reviewers"
LIVE_ENVIRONMENT = "Live environment"

ROLE_PERMISSIONS = {
    OPERATORS: [
        ("runs", "view_run"),
        ("runs", "start_run"),
        ("runs", "cancel_run"),
        ("runs", "retry_run"),
        ("procedures", "view_procedure"),
    ],
    REVIEWERS: [
        ("runs", "view_run"),
        ("reviews", "decide_review"),
        ("reviews", "view_reviewrequest"),
        ("procedures", "view_procedure"),
    ],
    LIVE_ENVIRONMENT: [
        ("runs", "view_live_run"),
    ],
}


def ensure_roles() -> dict[str, Group]:
    groups = {}
    for name, permissions in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        perms = [
            Permission.objects.get(content_type__app_label=app, codename=codename)
            for app, codename in permissions
        ]
        group.permissions.add(*perms)
        groups[name] = group
    return groups
