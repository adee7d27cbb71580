"""Locust user flows against a running graylane (e.g. ``make demo``, or conf/demo.yaml):

    .venv/bin/locust -f loadtest/locustfile.py --host http://127.0.0.1:8080 \
        --headless -u 50 -r 10 -t 60s

- ``GrayUser``: X-User-ID ``user_gray_N``, should always get the gray version (v2);
- ``StickyUser``: X-User-ID ``user_N``, should keep the version it got first;
- ``AnonymousUser``: no X-User-ID, split per request.

At the end the answers per flow and version (from the X-Graylane-Version response header,
which the config must enable under ``observability.version_header``) are printed, with the
gray users answered off v2 and the sticky users who changed version. With ``--master`` and
``--worker`` processes the workers' counts are added up on the master. Point ``--host`` only
at a graylane on this machine (127.0.0.1).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from locust import HttpUser, between, events, task

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # locust loads this file by path

from loadtest.flows import VERSION_HEADER, VersionTally, gray_user_id, sticky_user_id  # noqa: E402

PATHS = [p for p in os.environ.get("GRAYLANE_LOCUST_PATHS", "/,/api/items,/static/app.js").split(",") if p]
TALLY = VersionTally(gray_version=os.environ.get("GRAYLANE_LOCUST_GRAY_VERSION", "v2"))


class _Flow(HttpUser):
    abstract = True
    wait_time = between(0.05, 0.3)
    flow = "?"
    gray = False

    def on_start(self) -> None:
        self.user_id: str | None = None

    def _headers(self) -> dict[str, str]:
        return {"X-User-ID": self.user_id} if self.user_id else {}

    @task
    def browse(self) -> None:
        for path in PATHS:
            with self.client.get(path, headers=self._headers(), name=path, catch_response=True) as answer:
                TALLY.record(
                    self.flow, answer.headers.get(VERSION_HEADER), user_id=self.user_id, gray=self.gray
                )
                if answer.status_code >= 500:
                    answer.failure(f"{answer.status_code} from graylane")
                else:
                    answer.success()


class GrayUser(_Flow):
    weight = 1
    flow = "gray"
    gray = True

    def on_start(self) -> None:
        self.user_id = gray_user_id()


class StickyUser(_Flow):
    weight = 6
    flow = "sticky"

    def on_start(self) -> None:
        self.user_id = sticky_user_id()


class AnonymousUser(_Flow):
    weight = 3
    flow = "anonymous"


@events.report_to_master.add_listener
def _send_counts(client_id: str, data: dict[str, object]) -> None:
    data["graylane_versions"] = TALLY.export()


@events.worker_report.add_listener
def _add_counts(client_id: str, data: dict[str, object]) -> None:
    TALLY.merge(data.get("graylane_versions") or {})  # type: ignore[arg-type]


@events.quitting.add_listener
def _print_counts(environment: object, **kwargs: object) -> None:
    if getattr(environment, "runner", None).__class__.__name__ != "WorkerRunner":
        print(TALLY.render())
