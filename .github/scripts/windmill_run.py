#!/usr/bin/env python3
"""Start a Windmill flow or script by path, follow the job to its end (stdlib only).

    windmill_run.py --kind flow|script --path f/omni/rollout --args-json '{"tenants": [...]}' \
        [--timeout SECONDS] [--poll SECONDS] [--result-file FILE]

Environment: WINDMILL_URL (e.g. https://windmill.example.com), WINDMILL_WORKSPACE,
WINDMILL_TOKEN (a Windmill token kept as a repository secret; never printed).

Windmill's job API (openapi `runFlowByPath` / `runScriptByPath` / `getCompletedJobResultMaybe`):
  POST {url}/api/w/{ws}/jobs/run/f/{path}     (flow)    body: the args object -> job id (text)
  POST {url}/api/w/{ws}/jobs/run/p/{path}     (script)  body: the args object -> job id (text)
  GET  {url}/api/w/{ws}/jobs_u/completed/get_result_maybe/{id}
       -> {"completed": bool, "success": bool, "result": ..., "started": bool}

Prints the job's link ({url}/run/{id}?workspace={ws}) at once, then its outcome. Writes the
job's result as JSON to --result-file when it completed. Exit codes: 0 the job succeeded,
1 the job failed (or was cancelled), 2 bad usage or the API refused, 3 timed out (the job is
left running in Windmill: its link says where).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT = 0, 1, 2, 3


class ApiError(Exception):
    pass


def request(method: str, url: str, token: str, body: Any = None, timeout: float = 30) -> str:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (http(s) only)
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            return str(resp.read().decode())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        where = urllib.parse.urlsplit(url).path
        raise ApiError(f"{method} {where}: HTTP {exc.code}: {detail}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise ApiError(f"{method} {urllib.parse.urlsplit(url).path}: {exc}") from None


def start(base: str, workspace: str, token: str, kind: str, path: str, args: dict[str, Any]) -> str:
    letter = "f" if kind == "flow" else "p"
    quoted = urllib.parse.quote(path, safe="/")
    url = f"{base}/api/w/{urllib.parse.quote(workspace)}/jobs/run/{letter}/{quoted}"
    job_id = request("POST", url, token, args).strip().strip('"')
    if not job_id:
        raise ApiError("Windmill returned no job id")
    return job_id


def result_maybe(base: str, workspace: str, token: str, job_id: str) -> dict[str, Any]:
    url = (f"{base}/api/w/{urllib.parse.quote(workspace)}/jobs_u/completed/get_result_maybe/"
           f"{urllib.parse.quote(job_id)}")
    answer = json.loads(request("GET", url, token))
    if not isinstance(answer, dict) or "completed" not in answer:
        raise ApiError(f"unexpected answer for job {job_id}: {str(answer)[:200]}")
    return answer


def main(argv: list[str] | None = None, env: dict[str, str] | None = None) -> int:
    env = dict(os.environ) if env is None else env
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("flow", "script"), default="flow")
    parser.add_argument("--path", required=True)
    parser.add_argument("--args-json", default="{}")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--poll", type=float, default=10.0)
    parser.add_argument("--result-file", default="")
    opts = parser.parse_args(argv)
    base = env.get("WINDMILL_URL", "").rstrip("/")
    workspace = env.get("WINDMILL_WORKSPACE", "")
    token = env.get("WINDMILL_TOKEN", "")
    missing = [n for n, v in (("WINDMILL_URL", base), ("WINDMILL_WORKSPACE", workspace),
                              ("WINDMILL_TOKEN", token)) if not v]
    if base and urllib.parse.urlsplit(base).scheme not in ("http", "https"):
        missing.append("WINDMILL_URL (http or https)")
    if missing:
        print(f"::error::windmill_run: {', '.join(missing)} not set", file=sys.stderr)
        return EXIT_USAGE
    try:
        args = json.loads(opts.args_json)
    except ValueError as exc:
        print(f"::error::windmill_run: --args-json: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not isinstance(args, dict):
        print("::error::windmill_run: --args-json must be a JSON object", file=sys.stderr)
        return EXIT_USAGE
    try:
        job_id = start(base, workspace, token, opts.kind, opts.path, args)
    except ApiError as exc:
        print(f"::error::windmill_run: cannot start {opts.path}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    link = f"{base}/run/{job_id}?workspace={urllib.parse.quote(workspace)}"
    print(f"Windmill job {job_id} ({opts.kind} {opts.path}): {link}", flush=True)
    deadline = time.monotonic() + opts.timeout
    errors = 0
    while True:
        try:
            answer = result_maybe(base, workspace, token, job_id)
            errors = 0
        except ApiError as exc:  # a transient API error: retry a few times
            errors += 1
            print(f"::warning::windmill_run: {exc}", file=sys.stderr)
            if errors >= 5:
                print(f"::error::windmill_run: cannot follow job {job_id}: {link}", file=sys.stderr)
                return EXIT_FAILED
            answer = {"completed": False}
        if answer.get("completed"):
            break
        if time.monotonic() >= deadline:
            print(f"::error::windmill_run: job {job_id} did not finish within "
                  f"{opts.timeout:g}s (still running: {link})", file=sys.stderr)
            return EXIT_TIMEOUT
        time.sleep(max(0.0, min(opts.poll, deadline - time.monotonic())))
    if opts.result_file:
        with open(opts.result_file, "w", encoding="utf-8") as out:
            json.dump(answer.get("result"), out)
    if answer.get("success"):
        print(f"Windmill job {job_id} succeeded: {link}")
        return EXIT_OK
    print(f"::error::Windmill job {job_id} failed: {link}", file=sys.stderr)
    print(json.dumps(answer.get("result"))[:4000], file=sys.stderr)
    return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
