"""Admin behaviour shared by the record models: visible to admins, never changed or deleted."""


class ReadOnlyRecordAdmin:
    """Runs, steps, events, review requests and decisions: history is shown, never edited."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
