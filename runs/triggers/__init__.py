"""Triggers start runs from outside events: Stripe and Linear webhooks (hooks.py, urls.py) and
cron schedules (cron.py), all through services.accept_event; refused deliveries are counted,
bounded, by rejections.py. The Trigger, TriggerEvent and RejectedDelivery models, and the checks
of a trigger's configuration, live in procedures."""
