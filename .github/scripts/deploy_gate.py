#!/usr/bin/env python3
"""omni-deploy.yml's gate (stdlib only): the reviewed plan fingerprint, then the rollouts.

    deploy_gate.py reviewed --event push|workflow_dispatch
    deploy_gate.py rollouts --event push|workflow_dispatch --tenants-file F --out F.jsonl

`reviewed` fails closed (exit 1, `::error::`) unless there is a reviewed fleet plan
fingerprint: on dispatch the `plan_fingerprint` input ($DISPATCH_FINGERPRINT); on a push the
merged pull request's plan comment, posted by github-actions[bot] (marker `<!-- omni-plan -->`)
for exactly the PR's head commit (`<!-- omni-plan-commit: SHA -->`). It writes
`fingerprint=...` to $GITHUB_OUTPUT. GitHub's REST API at $GITHUB_API_URL, token $GH_TOKEN.

`rollouts` writes one JSON object per line, the args of one `f/omni/rollout` run:
{tenants, image, git_ref, expect_fleet_plan}. Dispatch: $DISPATCH_TENANTS / $DISPATCH_IMAGE.
Push: the tenant files listed in --tenants-file, grouped by the `image:` of each file at the
merged commit (one rollout per image); none listed: nothing to roll out (exit 0).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

MARKER = "<!-- omni-plan -->"
BOT = "github-actions[bot]"
FINGERPRINT = re.compile(r"[0-9a-f]{16,64}")
SHA = re.compile(r"[0-9a-f]{40}")
SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}")


class Refused(Exception):
    """No deploy: the reason is printed as a workflow error."""


def api(path: str, env: dict[str, str]) -> Any:
    base = env.get("GITHUB_API_URL", "https://api.github.com").rstrip("/")
    if urllib.parse.urlsplit(base).scheme not in ("http", "https"):
        raise Refused(f"GITHUB_API_URL is not http(s): {base}")
    req = urllib.request.Request(base + path)  # noqa: S310 (http(s) only)
    req.add_header("Accept", "application/vnd.github+json")
    req.add_header("Authorization", f"Bearer {env.get('GH_TOKEN', '')}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
            return json.loads(resp.read().decode())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise Refused(f"GitHub API {path}: {exc}") from None


def marked(body: str, name: str) -> str:
    found = re.findall(rf"<!-- {name}: ([0-9a-f]+) -->", body)
    return found[-1] if found else ""


def reviewed_fingerprint(event: str, env: dict[str, str]) -> str:
    if event == "workflow_dispatch":
        given = env.get("DISPATCH_FINGERPRINT", "").strip()
        if not FINGERPRINT.fullmatch(given):
            raise Refused("plan_fingerprint: give the reviewed fleet plan fingerprint (hex)")
        return given
    if event != "push":
        raise Refused(f"unsupported event {event!r}")
    repo, sha = env.get("GITHUB_REPOSITORY", ""), env.get("GITHUB_SHA", "")
    pulls = api(f"/repos/{repo}/commits/{sha}/pulls", env)
    merged = [p for p in pulls if p.get("merged_at") and p.get("merge_commit_sha") == sha]
    if not merged:
        raise Refused(f"{sha} is not the merge of a pull request: no reviewed plan")
    pull = merged[0]
    number, head = pull["number"], pull["head"]["sha"]
    comments: list[dict[str, Any]] = []
    for page in range(1, 51):
        batch = api(f"/repos/{repo}/issues/{number}/comments?per_page=100&page={page}", env)
        comments += batch
        if len(batch) < 100:
            break
    plans = [c for c in comments if (c.get("user") or {}).get("login") == BOT
             and str(c.get("body", "")).startswith(MARKER)]
    if not plans:
        raise Refused(f"PR #{number} has no omni plan comment: no reviewed plan")
    body = str(plans[-1]["body"])
    fingerprint, commit = marked(body, "omni-plan-fingerprint"), marked(body, "omni-plan-commit")
    if not FINGERPRINT.fullmatch(fingerprint):
        raise Refused(f"PR #{number}: its last plan failed, no reviewed fingerprint")
    if commit != head:
        raise Refused(f"PR #{number}: the plan is for {commit or 'no commit'}, "
                      f"not for the merged head {head}")
    print(f"Reviewed plan of PR #{number} at {head}: {fingerprint}")
    return fingerprint


def tenant_image(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"image:\s*(['\"]?)([^'\"#\s]+)\1\s*(#.*)?", line)
        if match:
            return match.group(2)
    return ""


def rollouts(event: str, env: dict[str, str], tenants_file: str,
             inventory: Path) -> list[dict[str, Any]]:
    fingerprint, ref = env.get("FINGERPRINT", ""), env.get("GITHUB_SHA", "")
    if not FINGERPRINT.fullmatch(fingerprint):
        raise Refused("no reviewed plan fingerprint: no deploy")
    if not SHA.fullmatch(ref):
        raise Refused(f"GITHUB_SHA is not a commit: {ref!r}")
    groups: dict[str, list[str]] = {}
    if event == "workflow_dispatch":
        slugs = [s for s in re.split(r"[\s,]+", env.get("DISPATCH_TENANTS", "")) if s]
        image = env.get("DISPATCH_IMAGE", "").strip()
        if not slugs:
            raise Refused("tenants: name at least one tenant")
        if not IMAGE.fullmatch(image):
            raise Refused(f"image: not an image reference: {image!r}")
        groups[image] = slugs
    else:
        listed = Path(tenants_file) if tenants_file else None
        text = listed.read_text() if listed and listed.exists() else ""
        for slug in text.split():
            image = tenant_image(inventory / "tenants" / f"{slug}.yaml")
            if not IMAGE.fullmatch(image):
                raise Refused(f"inventory/tenants/{slug}.yaml names no image")
            groups.setdefault(image, []).append(slug)
    for slugs in groups.values():
        for slug in slugs:
            if not SLUG.fullmatch(slug):
                raise Refused(f"not a tenant slug: {slug!r}")
    return [{"tenants": slugs, "image": image, "git_ref": ref, "expect_fleet_plan": fingerprint}
            for image, slugs in sorted(groups.items())]


def main(argv: list[str] | None = None, env: dict[str, str] | None = None) -> int:
    env = dict(os.environ) if env is None else env
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("reviewed", "rollouts"))
    parser.add_argument("--event", required=True)
    parser.add_argument("--tenants-file", default="")
    parser.add_argument("--inventory", default="inventory")
    parser.add_argument("--out", default="")
    opts = parser.parse_args(argv)
    try:
        if opts.what == "reviewed":
            fingerprint = reviewed_fingerprint(opts.event, env)
            if env.get("GITHUB_OUTPUT"):
                with open(env["GITHUB_OUTPUT"], "a", encoding="utf-8") as out:
                    out.write(f"fingerprint={fingerprint}\n")
            return 0
        runs = rollouts(opts.event, env, opts.tenants_file, Path(opts.inventory))
    except Refused as exc:
        print(f"::error::no deploy: {exc}")
        return 1
    if not runs:
        print("::notice::no tenant file changed since the last deploy: nothing to roll out")
    with open(opts.out, "w", encoding="utf-8") as out:
        for run in runs:
            out.write(json.dumps(run) + "\n")
            print(f"rollout {run['image']} -> {' '.join(run['tenants'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
