# Inline step of omni's approval flows: the page an approver sees. Windmill renders a result
# {"markdown": ...} as markdown on the suspended step, i.e. on the approval page.
def main(title: str, fingerprint: str, plans: list[dict]) -> dict:
    lines = [f"### {title}", "", f"Plan fingerprint: `{fingerprint}`", ""]
    for plan in plans:
        data = plan.get("data") or {}
        for step in plan.get("steps") or []:
            if step.get("verb") == "noop":
                continue
            lines.append(f"- `{step['verb']}` `{step['resource']}`: {step['summary']}")
            if step.get("diff"):
                lines += ["", "<details><summary>diff</summary>", "", "````diff",
                          step["diff"].rstrip(), "````", "", "</details>", ""]
        for row in data.get("tenants") or []:
            lines.append(f"- `{row.get('tenant')}` on `{row.get('host')}`: {row.get('detail')}")
    lines += ["", "Approving applies exactly this plan: omni refuses one that drifted."]
    return {"markdown": "\n".join(lines)}
