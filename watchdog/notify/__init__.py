"""The notify pipeline: mute, mark flapping, route and group alerts, deduplicate, render,
queue and deliver.

Importing the package registers the `term://` Apprise scheme (see `terminal`).
"""

from watchdog.notify import terminal as _terminal  # noqa: F401  (registers term://)
from watchdog.notify.context import PollContext
from watchdog.notify.deliver import Deliverer, DeliveryResult, backoff, notify_test, send
from watchdog.notify.dispatch import Decision, Dispatcher, Group, next_record, notify_type
from watchdog.notify.render import AlertView, Format, Notice, Renderer
from watchdog.notify.routing import group_key, matches, routes_for

__all__ = [
    "AlertView",
    "Decision",
    "Deliverer",
    "DeliveryResult",
    "Dispatcher",
    "Format",
    "Group",
    "Notice",
    "PollContext",
    "Renderer",
    "backoff",
    "group_key",
    "matches",
    "next_record",
    "notify_test",
    "notify_type",
    "routes_for",
    "send",
]
