# Windmill script f/omni/page: pages on-call with an Events-API style JSON POST
# ({"routing_key", "event_action", "dedup_key", "payload": {"summary", "source", "severity",
# "custom_details"}}, as PagerDuty's Events API v2 takes it) to the webhook resource `pager`.
# Failure handler of every omni flow (failure_module) and on_failure / on_recovery handler of
# every omni schedule (Windmill passes path, schedule_path, error, failed_times, ...).
# Standard library only: Windmill installs nothing for it.
# ruff: noqa: UP045
import json
import urllib.request
from typing import Literal, Optional, TypedDict


class omni_pager(TypedDict):  # Windmill: a TypedDict named as the resource type
    url: str  # the Events API endpoint, e.g. https://events.pagerduty.com/v2/enqueue
    routing_key: str


def event(
    routing_key: str,
    summary: str,
    event_action: str,
    severity: str,
    source: str,
    dedup_key: str,
    details: dict,
) -> dict:
    """The Events-API body. Pure."""
    body: dict = {"routing_key": routing_key, "event_action": event_action,
                  "dedup_key": dedup_key}
    if event_action == "trigger":
        body["payload"] = {"summary": summary[:1024], "source": source, "severity": severity,
                           "custom_details": details}
    return body


def main(
    pager: omni_pager,
    summary: str = "",
    event_action: Literal["trigger", "resolve"] = "trigger",
    severity: Literal["critical", "error", "warning", "info"] = "error",
    source: str = "windmill f/omni",
    dedup_key: Optional[str] = None,
    error: Optional[dict] = None,
    path: Optional[str] = None,
    schedule_path: Optional[str] = None,
    failed_times: Optional[int] = None,
    started_at: Optional[str] = None,
    job_id: Optional[str] = None,
) -> dict:
    """POST one event; returns the endpoint's answer. Raises on an HTTP error so the
    failure shows in Windmill too."""
    what = schedule_path or path or "f/omni"
    error = error or {}
    text = summary or f"{what} failed: {error.get('name', 'error')}: {error.get('message', '')}"
    details = {k: v for k, v in {"path": path, "schedule_path": schedule_path,
                                 "failed_times": failed_times, "started_at": started_at,
                                 "job_id": job_id, "error": error}.items() if v}
    body = event(pager["routing_key"], text, event_action, severity, source,
                 dedup_key or what, details)
    if not pager["url"].startswith(("https://", "http://")):
        raise ValueError("pager.url: must be an http(s) URL")
    request = urllib.request.Request(  # noqa: S310 (scheme checked above)
        pager["url"], data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        answer = response.read().decode("utf-8", "replace")
    try:
        return {"sent": body, "answer": json.loads(answer)}
    except ValueError:
        return {"sent": body, "answer": answer}
