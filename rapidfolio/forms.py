"""What every form of ours shares."""


class FocusFirstError:
    """A form answered with errors puts the focus on its first invalid field (WCAG 2.4.3, 3.3.1).

    Django already marks such a field `aria-invalid="true"` and points its `aria-describedby`
    at the error; `autofocus` on the first of them, in the fields' order, brings the keyboard
    and the screen reader there on a full page load without JavaScript, and htmx focuses an
    `autofocus` element in the content it swaps in. Mix it in before `forms.Form`.
    """

    def full_clean(self):
        super().full_clean()
        for name, field in self.fields.items():
            if name in self.errors and not field.widget.is_hidden:
                field.widget.attrs["autofocus"] = True
                break
