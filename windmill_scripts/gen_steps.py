"""Generates the Windmill steps ``f/omni/<name>.py`` and their ``<name>.script.yaml``.

Usage (from the repo; validate.sh runs ``--check``)::

    python windmill_scripts/gen_steps.py NODE_MODULES_DIR           # write
    python windmill_scripts/gen_steps.py NODE_MODULES_DIR --check   # fail if stale

One step per omni command (table ``STEPS`` below). Each step is a Python script with a
typed ``main(...)`` (lists, bools, ``Literal`` enums, ``Optional`` values) that builds the
omni argv and runs it through ``omni-windmill-step`` (installed with omni on the worker
image; see docs/automation.md): the SSH key variable becomes a 0600 file in a private HOME
for that job only, omni runs with ``--json``, and the step returns omni's envelope or raises
with omni's ``error[...]`` lines. The scripts import only the standard library, so Windmill
installs nothing for them (in particular not PyPI's unrelated ``omni``); ``tag: omni`` runs
them on the worker group whose image has our omni.

Steps that change hosts and have a plan (``NEEDS_APPROVED_PLAN``) refuse to apply without
``expect_plan``; steps whose command may write a tenant file (``PROPOSES_CHANGE``) apply
only on the inventory from git (``git_ref``) and propose the change as a pull request
(``_propose`` in the shared runner code), or fail.

The schema in each ``.script.yaml`` is what Windmill's own parser
(``windmill-parser-wasm-py``, the copy windmill-cli pins) infers from ``main``, turned into
JSON schema the way Windmill's editor does (``argSigToJsonSchemaType``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
FOLDER = HERE / "f" / "omni"
TAG = "omni"
KEY_DEFAULT = "f/omni/ssh_private_key"
REPO_DEFAULT = "f/omni/inventory_repo_url"


@dataclass(frozen=True)
class Param:
    """One ``main`` parameter and how it becomes omni arguments.

    kind: ``arg`` (one positional), ``args`` (positionals, after ``--``), ``opt``
    (``--flag=VALUE`` when set), ``opts`` (``--flag=VALUE`` per item), ``flag`` (bool
    ``--flag``), ``negflag`` (Optional[bool]: ``--flag`` / ``--no-flag``), ``confirm``
    (``--flag`` when the value equals the slug: typing the slug again confirms).
    """

    name: str
    annotation: str
    default: str | None  # Python source of the default; None: required
    kind: str
    flag: str = ""


@dataclass(frozen=True)
class StepDef:
    name: str
    command: tuple[str, ...]
    summary: str
    params: tuple[Param, ...] = ()
    changes_hosts: bool = False


def P(name: str, annotation: str, default: str | None, kind: str, flag: str = "") -> Param:
    return Param(name, annotation, default, kind, flag)


SLUG = P("slug", "str", None, "arg")
SLUGS = P("slugs", "list[str]", "[]", "args")
HOST = P("host", "Optional[str]", "None", "opt", "--host")
DRY = P("dry_run", "bool", "False", "flag", "--dry-run")
WAIT = P("wait", "float", "0.0", "opt", "--wait")
PARALLEL = P("parallel", "Optional[int]", "None", "opt", "--parallel")
EVERY = P("every", "bool", "False", "flag", "--all")
KEEP = P("keep_going", "bool", "False", "flag", "--keep-going")
EXPECT = P("expect_plan", "Optional[str]", "None", "opt", "--expect-plan")

STEPS: tuple[StepDef, ...] = (
    StepDef("inventory_check", ("inventory", "check"), "omni inventory check"),
    StepDef("hosts_check", ("hosts", "check"), "omni hosts check [HOST...]",
            (P("hosts", "list[str]", "[]", "args"),)),
    StepDef("plan", ("plan",), "omni plan: the fleet's dry run",
            (SLUGS, HOST, P("markdown", "bool", "True", "markdown"), EXPECT)),
    StepDef("tenant_create", ("tenant", "create"), "omni tenant create SLUG (plan or apply)",
            (SLUG, HOST, P("domains", "list[str]", "[]", "opts", "--domain"),
             P("image", "Optional[str]", "None", "opt", "--image"),
             P("admin_email", "Optional[str]", "None", "opt", "--admin-email"),
             DRY, EXPECT, WAIT), changes_hosts=True),
    StepDef("tenant_destroy", ("tenant", "destroy"),
            "omni tenant destroy SLUG (confirm: the slug again)",
            (SLUG, P("confirm", "str", '""', "confirm", "--yes"), DRY, EXPECT, WAIT),
            changes_hosts=True),
    StepDef("tenant_list", ("tenant", "list"), "omni tenant list",
            (P("no_probe", "bool", "False", "flag", "--no-probe"),)),
    StepDef("tenant_show", ("tenant", "show"), "omni tenant show SLUG", (SLUG,)),
    StepDef("tenant_credentials", ("tenant", "credentials"),
            "omni tenant credentials SLUG (secrets in the result)",
            (SLUG,)),
    StepDef("health_check", ("health-check",), "omni health-check [SLUG...]", (SLUGS, HOST)),
    StepDef("migrate_all", ("migrate-all",), "omni migrate-all",
            (P("tenants", "list[str]", "[]", "opts", "--tenant"), HOST, PARALLEL, DRY,
             P("force", "bool", "False", "flag", "--force"), EXPECT, WAIT),
            changes_hosts=True),
    StepDef("restart", ("restart",), "omni restart SLUG...|--all",
            (SLUGS, EVERY,
             P("service", 'Literal["app", "redis", "all"]', '"app"', "opt", "--service"),
             PARALLEL, KEEP, WAIT), changes_hosts=True),
    StepDef("certs_renew", ("certs", "renew"), "omni certs renew [SLUG...]",
            (SLUGS, HOST, DRY, EXPECT, WAIT), changes_hosts=True),
    StepDef("deploy", ("deploy",), "omni deploy SLUG...|--all --image IMAGE",
            (P("image", "str", None, "opt", "--image"), SLUGS, EVERY, PARALLEL, KEEP, DRY,
             EXPECT, WAIT), changes_hosts=True),
    StepDef("rollback", ("rollback",), "omni rollback SLUG",
            (SLUG, P("to", "Optional[str]", "None", "opt", "--to"),
             P("restore_db", "Optional[bool]", "None", "negflag", "--restore-db"), DRY, EXPECT,
             WAIT), changes_hosts=True),
    StepDef("releases", ("releases",), "omni releases SLUG", (SLUG,)),
    StepDef("history", ("history",), "omni history [SLUG]",
            (P("slug", "Optional[str]", "None", "args"), HOST,
             P("limit", "int", "50", "opt", "--limit"))),
    StepDef("backup", ("backup", "run"), "omni backup run SLUG...|--all",
            (SLUGS, EVERY, PARALLEL, WAIT), changes_hosts=True),
    StepDef("backup_list", ("backup", "list"), "omni backup list SLUG", (SLUG,)),
    StepDef("backup_verify", ("backup", "verify"), "omni backup verify SLUG...|--all",
            (SLUGS, EVERY, PARALLEL,
             P("read_data_subset", "float", "10.0", "opt", "--read-data-subset")),
            changes_hosts=False),
    StepDef("backup_restore", ("backup", "restore"),
            "omni backup restore SLUG (confirm: the slug again)",
            (SLUG, P("snapshot", "Optional[str]", "None", "opt", "--snapshot"),
             P("confirm", "str", '""', "confirm", "--yes"), DRY, EXPECT, WAIT),
            changes_hosts=True),
)

# Hand-written scripts: gen_steps.py writes only their .script.yaml (schema from the parser).
HANDWRITTEN = {
    "page": "Page on-call: Events-API style JSON POST to the omni_pager webhook resource",
}

COMMON = (
    P("inventory", "str", '""', "runner"),
    P("ssh_key_variable", "str", repr(KEY_DEFAULT).replace("'", '"'), "runner"),
    # The inventory from git at a known commit: a private checkout for this job only.
    P("git_ref", "str", '""', "runner"),
    P("repo_variable", "str", repr(REPO_DEFAULT).replace("'", '"'), "runner"),
)

# Steps that change hosts and whose omni command checks a reviewed plan fingerprint
# (`--expect-plan`): they refuse to apply without one (unless dry_run). `restart` and
# `backup` change hosts too but have no plan to review (a restart, a backup): see
# NO_PLAN_ENFORCEMENT and the README ("Who can run what").
NEEDS_APPROVED_PLAN = {"tenant_create", "tenant_destroy", "deploy", "rollback", "migrate_all",
                       "certs_renew", "backup_restore"}
NO_PLAN_ENFORCEMENT = {
    "restart": "no plan to review: runs from flows only (folder permissions, see README)",
    "backup": "no plan to review: runs from flows only (folder permissions, see README)",
}
# Steps whose omni command may write inventory/tenants/<slug>.yaml (ports on create, the
# image on deploy/rollback, the file removed on destroy): they apply only on the inventory
# from git (`git_ref`) and propose the change back as a pull request, else fail. The value:
# the Python expression naming the tenants in the branch name.
PROPOSES_CHANGE = {
    "tenant_create": "slug",
    "tenant_destroy": "slug",
    "deploy": '"-".join(slugs) or "all"',
    "rollback": "slug",
}
GITHUB_DEFAULT = "f/omni/github"

# The part every step shares, verbatim (Windmill runs each script on its own).
RUNNER = '''

def _run(argv: list[str], inventory: str, ssh_key_variable: str, git_ref: str = "",
         repo_variable: str = "", propose: str = "", github_resource: str = "") -> dict:
    """Run `omni --json ARGV` through omni-windmill-step (installed with omni on the
    worker): it writes the SSH key variable to a 0600 file in a private HOME for this job
    only, runs omni, prints its envelope last. With ``git_ref`` the inventory is the
    repository's at that commit, checked out for this job only (``_checkout``). With
    ``propose`` (``STEP-SLUG``), a change omni made under ``inventory/`` in that checkout
    is proposed as a pull request (``_propose``), its URL in the envelope's
    ``pull_request``. Returns the envelope; raises with omni's error lines when omni fails,
    or when its change could not be proposed."""
    work = _checkout(git_ref, repo_variable) if git_ref else ""
    try:
        if work:
            inventory = os.path.join(work, "repo", "inventory")
        runner = os.environ.get("OMNI_WINDMILL_STEP", "omni-windmill-step")
        command = [runner, f"--inventory={inventory}",
                   f"--ssh-key-variable={ssh_key_variable}", "--", *argv]
        with subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) as proc:
            def cancel(signum: int, frame: object) -> None:
                proc.terminate()  # the runner removes the key, then exits
            signal.signal(signal.SIGTERM, cancel)
            out, err = proc.communicate()
        sys.stderr.write(err)  # progress and omni's error lines, in the job log
        lines = out.strip().splitlines()
        try:
            envelope = json.loads(lines[-1]) if lines else None
        except ValueError:
            envelope = None
        if proc.returncode != 0:
            errors = [ln for ln in err.splitlines() if ln.startswith("error[")]
            raise RuntimeError(
                f"omni {' '.join(a for a in argv[:2] if a != '--')} failed "
                f"(exit {proc.returncode}): "
                + ("; ".join(errors) or err.strip()[-2000:] or "no output"))
        if not isinstance(envelope, dict):
            raise RuntimeError("omni printed no JSON envelope")
        if work and propose:
            envelope["pull_request"] = _propose(os.path.join(work, "repo"), propose, git_ref,
                                                repo_variable, github_resource)
        return envelope
    finally:
        if work:
            shutil.rmtree(work, ignore_errors=True)


def _git(repo: str, *args: str, env: dict | None = None) -> str:
    done = subprocess.run(["git", "-C", repo, *args], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True,
                          env=env or {**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    if done.returncode != 0:  # git's message may name a URL: keep it out of the log
        raise RuntimeError(f"git {args[0]} failed (exit {done.returncode})")
    return done.stdout


def _propose(repo: str, what: str, git_ref: str, repo_variable: str,
             github_resource: str) -> dict | None:
    """If omni changed files under ``inventory/`` in the checkout ``repo``: commit them on
    a new branch ``omni/WHAT-SHORTSHA``, push it and open a pull request against the
    resource's ``base`` branch. Returns ``{url, number, branch, commit, files}``, or None
    when nothing changed. The token (Windmill resource ``github_resource``: ``token``,
    ``repository`` OWNER/NAME, ``base``, optional ``api_url``, ``push_url``) reaches git
    only as an ``http.extraheader`` in ``GIT_CONFIG_*`` environment variables and the API
    only in a request header: never on a command line, never in the log. Raises
    RuntimeError naming what failed: the change is then on the hosts but not in git."""
    status = _git(repo, "status", "--porcelain", "--untracked-files=all", "--", "inventory/")
    if not status.strip():
        return None
    files = sorted(line[3:] for line in status.splitlines())
    try:
        github = _resource(github_resource)
        token, repository = str(github["token"]), str(github["repository"])
        base = str(github.get("base") or "main")
        owner, name = repository.split("/", 1)
        api = str(github.get("api_url") or "https://api.github.com").rstrip("/")
        push_url = str(github.get("push_url") or os.environ.get("OMNI_INVENTORY_REPO")
                       or _variable(repo_variable))
        job = os.environ.get("WM_JOB_ID", "")
        _git(repo, "add", "-A", "--", "inventory/")
        _git(repo, "-c", "user.name=omni (Windmill)", "-c", "user.email=omni@windmill.invalid",
             "commit", "--quiet", "--no-verify", "-m",
             f"omni {what}: tenant files\\n\\nWritten by Windmill job {job} on the inventory "
             f"at {git_ref}.")
        commit = _git(repo, "rev-parse", "HEAD").strip()
        branch = f"omni/{what}-{commit[:8]}"
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_COUNT": "1",
               "GIT_CONFIG_KEY_0": "http.extraheader",
               "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}"}
        _git(repo, "push", "--quiet", "--", push_url, f"HEAD:refs/heads/{branch}", env=env)
        body = json.dumps({
            "title": f"omni {what}: tenant files changed by Windmill",
            "head": branch, "base": base,
            "body": (f"Windmill job `{job}` ran `omni` on the inventory at `{git_ref}` and "
                     "changed these tenant files on the hosts already:\\n\\n"
                     + "".join(f"- `{f}`\\n" for f in files)
                     + "\\nMerge this so git matches the hosts."),
        }).encode()
        url = f"{api}/repos/{urllib.parse.quote(owner)}/{urllib.parse.quote(name)}/pulls"
        if not url.startswith(("http://", "https://")):
            raise RuntimeError("api_url: not an http(s) URL")
        request = urllib.request.Request(  # noqa: S310 (http(s) only)
            url, data=body, method="POST", headers={
                "Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                pull = json.loads(response.read().decode())
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"POST /repos/{repository}/pulls answered {exc.code}") from None
        return {"url": pull["html_url"], "number": pull.get("number"), "branch": branch,
                "commit": commit, "files": files}
    except (RuntimeError, KeyError, ValueError, OSError) as exc:
        raise RuntimeError(
            f"omni {what}: applied on the hosts, but its tenant file change "
            f"({', '.join(files)}) could not be proposed as a pull request: "
            f"{type(exc).__name__}: {exc}. git does not match the hosts until that "
            "change is committed (re-run this step once the problem is fixed: it is "
            "idempotent).") from None


def _resource(path: str) -> dict:
    """A Windmill resource's value ($var: references resolved), read with this job's
    token."""
    value = _api_get(f"resources/get_value_interpolated/{urllib.parse.quote(path)}")
    if not isinstance(value, dict):
        raise RuntimeError(f"resource {path}: not an object")
    return value


def _api_get(what: str) -> object:
    base = os.environ.get("BASE_INTERNAL_URL") or os.environ.get("BASE_URL", "")
    workspace = urllib.parse.quote(os.environ.get("WM_WORKSPACE", ""))
    url = f"{base}/api/w/{workspace}/{what}"
    if not url.startswith(("http://", "https://")):
        raise RuntimeError("no Windmill API here (BASE_INTERNAL_URL)")
    request = urllib.request.Request(  # noqa: S310 (http(s) only)
        url, headers={"Authorization": f"Bearer {os.environ.get('WM_TOKEN', '')}"})
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return json.loads(response.read().decode())


def _variable(path: str) -> str:
    """A Windmill variable's value, read with this job's own token."""
    try:
        return str(_api_get(f"variables/get_value/{urllib.parse.quote(path)}"))
    except RuntimeError as exc:
        raise RuntimeError(f"repo_variable: {exc}") from None


def _checkout(git_ref: str, repo_variable: str) -> str:
    """Clone the inventory repository (``$OMNI_INVENTORY_REPO`` on the worker, else the
    Windmill variable ``repo_variable``) into a private temp dir (0700) and check out the
    commit ``git_ref`` (a full SHA: never a branch, which could move). Returns the temp dir,
    which the caller removes; nothing on the worker is edited."""
    if not re.fullmatch(r"[0-9a-f]{40}", git_ref):
        raise ValueError(f"git_ref: a full 40-hex commit SHA, not {git_ref!r}")
    url = os.environ.get("OMNI_INVENTORY_REPO") or _variable(repo_variable)
    work = tempfile.mkdtemp(prefix="omni-inventory-")
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    repo = os.path.join(work, "repo")
    steps = (["clone", "--quiet", "--no-checkout", "--", url, repo],
             ["-C", repo, "checkout", "--quiet", "--detach", git_ref],
             ["-C", repo, "rev-parse", "HEAD"])
    for args in steps:
        done = subprocess.run(["git", "-c", "advice.detachedHead=false", *args], env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if done.returncode != 0:  # git's message may name the URL: keep it out of the log
            shutil.rmtree(work, ignore_errors=True)
            raise RuntimeError(f"git_ref: cannot check out {git_ref} (git {args[0]} "
                               f"failed, exit {done.returncode})")
    if done.stdout.strip() != git_ref:
        shutil.rmtree(work, ignore_errors=True)
        raise RuntimeError(f"git_ref: checked out {done.stdout.strip()}, not {git_ref}")
    return work
'''


def _argv_lines(step: StepDef) -> list[str]:
    lines = []
    if step.name in NEEDS_APPROVED_PLAN:
        lines += [
            "    if not dry_run and not expect_plan:",
            "        raise ValueError(\"expect_plan: this step changes hosts; apply only the \"",
            "                         \"approved plan's fingerprint (run it from its approval \"",
            "                         \"flow) or set dry_run\")",
        ]
    if step.name in PROPOSES_CHANGE:
        lines += [
            "    if not dry_run and not git_ref:",
            "        raise ValueError(\"git_ref: this step may change a tenant file; apply it \"",
            "                         \"on the inventory from git (a commit SHA) so the change \"",
            "                         \"comes back as a pull request\")",
        ]
    lines.append(f"    argv = {json.dumps(list(step.command))}")
    positional = []
    for p in step.params:
        n, f = p.name, p.flag
        if p.kind == "arg":
            positional.append(n)
        elif p.kind == "args":
            if p.annotation.startswith("Optional"):
                lines.append(f"    tail = [{n}] if {n} else []")
            else:
                lines.append(f"    tail = list({n})")
        elif p.kind == "opt":
            if p.default is None:
                lines.append(f"    argv.append(f\"{f}={{{n}}}\")")
            elif p.default == "None":
                lines.append(f"    if {n} is not None:")
                lines.append(f"        argv.append(f\"{f}={{{n}}}\")")
            else:
                lines.append(f"    if {n} != {p.default}:")
                lines.append(f"        argv.append(f\"{f}={{{n}}}\")")
        elif p.kind == "opts":
            lines.append(f"    argv += [f\"{f}={{v}}\" for v in {n}]")
        elif p.kind == "flag":
            lines.append(f"    if {n}:")
            lines.append(f"        argv.append(\"{f}\")")
        elif p.kind == "negflag":
            no = "--no-" + f.removeprefix("--")
            lines.append(f"    if {n} is not None:")
            lines.append(f"        argv.append(\"{f}\" if {n} else \"{no}\")")
        elif p.kind == "confirm":
            lines.append(f"    if {n} and {n} != slug:")
            lines.append(f"        raise ValueError(f\"{n}: type the slug ({{slug}}) to confirm\")")
            lines.append(f"    if {n}:")
            lines.append(f"        argv.append(\"{f}\")")
        elif p.kind == "markdown":
            lines.append(f"    if {n}:")
            lines.append("        argv.append(\"--format=markdown\")")
        else:
            raise ValueError(f"{step.name}: unknown kind {p.kind}")
    if any(p.kind == "args" for p in step.params):
        lines.append("    argv += [\"--\", *tail]")
    elif positional:
        lines.append(f"    argv += [\"--\", {', '.join(positional)}]")
    return lines


def render_script(step: StepDef) -> str:
    params = [*step.params, *COMMON]
    if step.name in PROPOSES_CHANGE:
        params.append(P("github_resource", "str", repr(GITHUB_DEFAULT).replace("'", '"'),
                        "runner"))
    sig = ",\n".join(
        f"    {p.name}: {p.annotation}" + ("" if p.default is None else f" = {p.default}")
        for p in params)
    header = [
        f"# Windmill step f/omni/{step.name}: {step.summary}.",
        "# Generated by windmill_scripts/gen_steps.py: edit the table there, not this file.",
        "# Runs on worker group `omni` (tag), whose image has omni installed; imports only the",
        "# standard library, so Windmill installs nothing (never PyPI's unrelated `omni`).",
    ]
    if step.changes_hosts:
        header.append("# Changes hosts: run it from the approval flows (see docs/automation.md).")
    if step.name in NO_PLAN_ENFORCEMENT:
        header.append(f"# Approval: {NO_PLAN_ENFORCEMENT[step.name]}.")
    if step.name in PROPOSES_CHANGE:
        header.append("# May change a tenant file: applies only at git_ref and proposes the "
                      "change as a pull request.")
    # Windmill's form reads these spellings: mutable `[]` defaults and `Optional[...]`.
    codes = [code for code, used in (
        ("B006", any(p.default == "[]" for p in params)),
        ("UP045", any(p.annotation.startswith("Optional") for p in params)),
    ) if used]
    if codes:
        header.append(f"# ruff: noqa: {', '.join(codes)}")
    typing_names = [name for name in ("Literal", "Optional")
                    if any(p.annotation.startswith(name) for p in params)]
    typing_line = f"from typing import {', '.join(typing_names)}\n" if typing_names else ""
    body = "\n".join(_argv_lines(step))
    return (
        "\n".join(header) + "\n"
        "import base64\nimport json\nimport os\nimport re\nimport shutil\nimport signal\n"
        "import subprocess\nimport sys\nimport tempfile\nimport urllib.error\nimport urllib.parse\n"
        "import urllib.request\n"
        f"{typing_line}"
        f"\n\ndef main(\n{sig},\n) -> dict:\n"
        f"    \"\"\"{step.summary}; returns omni's JSON envelope.\"\"\"\n"
        f"{body}\n"
        + (f"    return _run(argv, inventory, ssh_key_variable, git_ref, repo_variable,\n"
           f"                propose=\"{step.name}-\" + ({PROPOSES_CHANGE[step.name]}),\n"
           f"                github_resource=github_resource)\n"
           if step.name in PROPOSES_CHANGE else
           "    return _run(argv, inventory, ssh_key_variable, git_ref, repo_variable)\n")
        + RUNNER
    )


def json_schema_type(typ: Any) -> dict[str, Any]:
    """Windmill's argSigToJsonSchemaType for the types these steps use."""
    if typ == "bool":
        return {"type": "boolean"}
    if typ == "int":
        return {"type": "integer"}
    if typ == "float":
        return {"type": "number"}
    if isinstance(typ, dict) and "str" in typ:
        enum = typ["str"]
        return {"type": "string", **({"enum": enum} if enum else {})}
    if isinstance(typ, dict) and "resource" in typ:
        return {"type": "object", "format": f"resource-{typ['resource']}"}
    if typ == "dict" or (isinstance(typ, dict) and "object" in typ):
        return {"type": "object"}
    if isinstance(typ, dict) and "list" in typ:
        return {"type": "array", "items": json_schema_type(typ["list"])}
    raise ValueError(f"type {typ!r} is not used by omni's steps")


def parse_signatures(node_modules: Path, files: list[Path]) -> dict[str, Any]:
    done = subprocess.run(
        ["node", str(HERE / "parse_python_signatures.mjs"), str(node_modules),
         *map(str, files)], capture_output=True, text=True, check=True)
    parsed: dict[str, Any] = json.loads(done.stdout)
    return parsed


def render_meta(name: str, summary: str, signature: dict[str, Any], description: str) -> str:
    if signature.get("star_args") or signature.get("star_kwargs"):
        raise ValueError(f"{name}: *args/**kwargs are not supported")
    if signature.get("relative_imports"):
        raise ValueError(f"{name}: imports workspace scripts {signature['relative_imports']}")
    properties: dict[str, Any] = {}
    for arg in signature["args"]:
        prop = json_schema_type(arg["typ"])
        prop["description"] = ""
        if arg["has_default"] and arg["default"] is not None:
            prop["default"] = arg["default"]
        properties[arg["name"]] = prop
    meta = {
        "summary": summary,
        "description": description,
        "lock": "",
        "kind": "script",
        "tag": TAG,
        "schema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "order": [a["name"] for a in signature["args"]],
            "properties": properties,
            "required": [a["name"] for a in signature["args"] if not a["has_default"]],
        },
    }
    return yaml.safe_dump(meta, sort_keys=False, width=100)


STEP_DESCRIPTION = (
    "Runs omni with --json through omni-windmill-step; returns omni's envelope, fails with "
    "omni's error lines. Generated by windmill_scripts/gen_steps.py; see docs/automation.md.")


def generate(node_modules: Path) -> dict[Path, str]:
    """Every generated file and its content."""
    scripts = {FOLDER / f"{s.name}.py": render_script(s) for s in STEPS}
    scripts.update({FOLDER / f"{name}.py": (FOLDER / f"{name}.py").read_text()
                    for name in HANDWRITTEN})
    # The parser reads the files as Windmill would: write them to a scratch dir first.
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for path, text in scripts.items():
            scratch = Path(tmp) / path.name
            scratch.write_text(text)
            paths.append(scratch)
        signatures = parse_signatures(node_modules, paths)
        out: dict[Path, str] = {p: t for p, t in scripts.items()
                                if p.stem not in HANDWRITTEN}
        summaries = {s.name: s.summary for s in STEPS} | HANDWRITTEN
        for path, scratch in zip(scripts, paths, strict=True):
            name = path.stem
            description = ("See the comment at the top of the script and docs/automation.md."
                           if name in HANDWRITTEN else STEP_DESCRIPTION)
            out[FOLDER / f"{name}.script.yaml"] = render_meta(
                name, summaries[name], signatures[str(scratch)], description)
    return out


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    files = generate(Path(argv[1]))
    if "--check" in argv:
        stale = [str(p.relative_to(HERE)) for p, text in files.items()
                 if not p.is_file() or p.read_text() != text]
        known = {p.name for p in files}
        extra = [str(p.relative_to(HERE)) for p in sorted(FOLDER.glob("*.py"))
                 if p.name not in known and p.stem not in HANDWRITTEN]
        for name in stale:
            print(f"{name}: stale; run python windmill_scripts/gen_steps.py NODE_MODULES")
        for name in extra:
            print(f"{name}: a step not in gen_steps.py's table")
        return 1 if stale or extra else 0
    for path, text in files.items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
