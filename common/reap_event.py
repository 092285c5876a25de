"""The reap CloudEvent's contract, shared by its sender (`common.tick`) and its receiver.

Stdlib only: the sender runs in a short-lived CronJob pod on every tick.
"""

from __future__ import annotations

SPEC_VERSION = "1.0"
EVENT_TYPE = "io.cocoonstack.webhook.reap"
EVENT_SOURCE = "/apis/batch/v1/namespaces/cocoon-system/cronjobs/cocoon-reaper"
# The receiver requires these in either mode (SPEC 8.1); `type` is logged, not checked.
REQUIRED_ATTRIBUTES = ("specversion", "id", "source", "type")
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
# The event's data: `{"dryRun": true}` asks for a sweep that writes nothing.
DRY_RUN_FIELD = "dryRun"


def binary_headers(event_id: str) -> dict[str, str]:
    """The `ce-*` headers of a binary-mode event, as the CronJob sends it."""
    return {
        "ce-specversion": SPEC_VERSION,
        "ce-id": event_id,
        "ce-source": EVENT_SOURCE,
        "ce-type": EVENT_TYPE,
        "Content-Type": "application/json",
    }
