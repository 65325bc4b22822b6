"""Who runs omni: the actor's name from the environment (table-driven)."""

from __future__ import annotations

import pytest

from omni.actor import actor


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"OMNI_ACTOR": "alice (on-call)"}, "alice (on-call)"),
        # OMNI_ACTOR wins over every CI
        ({"OMNI_ACTOR": "bot", "GITHUB_ACTIONS": "true", "GITHUB_ACTOR": "octo"}, "bot"),
        ({"OMNI_ACTOR": "  ", "USER": "carol"}, "carol@box"),  # blank: ignored
        (
            {"GITHUB_ACTIONS": "true", "GITHUB_ACTOR": "octocat", "GITHUB_RUN_ID": "123",
             "WM_JOB_ID": "j1", "USER": "runner"},
            "github:octocat run 123",
        ),
        ({"GITHUB_ACTIONS": "true"}, "github:? run ?"),
        ({"GITHUB_ACTIONS": "false", "GITHUB_ACTOR": "octo", "USER": "dev"}, "dev@box"),
        (
            {"WM_JOB_ID": "0192-ab", "WM_USERNAME": "ops", "WM_EMAIL": "ops@example.com"},
            "windmill:ops job 0192-ab",
        ),
        ({"WM_JOB_ID": "0192-ab", "WM_EMAIL": "ops@example.com"},
         "windmill:ops@example.com job 0192-ab"),
        ({"WM_JOB_ID": "0192-ab"}, "windmill:? job 0192-ab"),
        ({"USER": "dave", "LOGNAME": "other"}, "dave@box"),
        ({"LOGNAME": "erin"}, "erin@box"),
        ({}, "fallback@box"),
    ],
)
def test_actor_names_who_runs_omni(environ: dict[str, str], expected: str) -> None:
    assert actor(environ, user=lambda: "fallback", hostname=lambda: "box") == expected
