"""`term://` (stdout) and `term://stderr`: an Apprise scheme that prints notifications.

The demo uses it so pages and resolutions show in the terminal; importing this module
registers the scheme.
"""

from __future__ import annotations

import sys
from typing import Any

from apprise.decorators import notify


@notify(on="term", name="Terminal")  # type: ignore[untyped-decorator,no-untyped-call]
def print_notification(body: str, title: str, notify_type: str, meta: dict[str, Any],
                       *args: Any, **kwargs: Any) -> bool:
    stream = sys.stderr if meta.get("host") == "stderr" else sys.stdout
    print(f"{title}\n{body}\n", file=stream, flush=True)
    return True
