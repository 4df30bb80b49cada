"""Where an action came from (host, OS user, Dagster run): recorded beside every registry change and approval."""

from __future__ import annotations

import getpass
import os
import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class Origin:
    """Where an action came from: host, OS user, and the Dagster run when a job did it."""

    host: str
    os_user: str
    dagster_run_id: str | None = None

    @classmethod
    def here(cls, dagster_run_id: str | None = None) -> Origin:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry (containers)
            user = os.environ.get("USER") or f"uid:{os.getuid()}"
        return cls(socket.gethostname(), user, dagster_run_id)
