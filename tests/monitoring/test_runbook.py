"""docs/runbook.md against the alerts, and README.md's monitoring claims that are about files:
every alert links a runbook section that exists, every alert section is an alert, each section
has its four parts, every path README.md's plan-coverage table names exists, and README.md's
sample rows are those of the committed sample report."""

from __future__ import annotations

import re

import yaml

import docs_text
from promstack import PROMETHEUS_DIR
from stack import REPO_ROOT

RUNBOOK = REPO_ROOT / "docs" / "runbook.md"


def anchor(heading: str) -> str:
    """The anchor GitHub and most Markdown renderers give a heading."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def alerts() -> dict[str, dict]:
    groups = yaml.safe_load((PROMETHEUS_DIR / "rules.yml").read_text())["groups"]
    return {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}


def sections() -> dict[str, str]:
    """Level-2 heading -> its text."""
    parts = re.split(r"^## (.+)$", RUNBOOK.read_text(), flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2]))


def test_every_alert_links_its_runbook_section():
    headings = {anchor(h) for h in sections()}
    for name, rule in alerts().items():
        url = rule["annotations"].get("runbook_url", "")
        assert url == f"docs/runbook.md#{anchor(name)}", (name, url)
        assert anchor(name) in headings, f"{name}: no section in docs/runbook.md"


def test_every_alert_section_is_an_alert_and_says_what_to_do():
    names = set(alerts())
    alert_sections = {h: text for h, text in sections().items() if h.startswith("EnvoyPresign")}
    assert set(alert_sections) == names
    for heading, text in alert_sections.items():
        for part in ("**Means**", "**Check**", "**Change**", "**Over when**"):
            assert part in text, f"{heading}: no {part}"
        severity = alerts()[heading]["labels"]["severity"]
        assert f"({severity}" in text, f"{heading}: severity {severity} not stated"


def test_runbook_has_the_daily_routine():
    routine = sections()["Daily routine"]
    for part in ("**Morning (start of day)**", "**Every 4 hours**", "**End of day**"):
        assert part in routine
    assert routine.count("- [ ]") >= 10


def test_readme_links_the_runbook_and_its_coverage_table_names_real_paths():
    text = docs_text.text()  # README.md and docs/*.md, where its sections moved
    assert "(docs/runbook.md)" in text
    table = text[text.index("| plan item | where it lives |"):]
    table = table[:table.index("\n\n")]
    paths = set(re.findall(r"`((?:envoy|tools|tests|docs)/[^`#: ]+)", table))
    assert len(paths) >= 8, paths
    missing = sorted(p for p in paths if not (REPO_ROOT / p).exists())
    assert not missing, missing


def test_readme_sample_rows_are_the_sample_reports():
    text = docs_text.text()  # README.md and docs/*.md, where its sections moved
    table = text[text.index("| measure (origin `media`) |"):]
    rows = [line for line in table[:table.index("\n\n")].splitlines()[2:]]
    sample = (REPO_ROOT / "docs" / "sample-report" / "report.md").read_text()
    media = sample[sample.index("## media"):]
    assert rows and all(row in media for row in rows), [r for r in rows if r not in media]
    for png in re.findall(r"\]\((docs/sample-report/[a-z]+\.png)\)", text):
        assert (REPO_ROOT / png).stat().st_size < 100_000, png


def test_every_recorded_series_the_runbook_names_exists():
    rules = yaml.safe_load((PROMETHEUS_DIR / "rules.yml").read_text())["groups"]
    recorded = {r["record"] for g in rules for r in g["rules"] if "record" in r}
    named = set(re.findall(r"\b((?:origin|origin_signal|origin_class|origin_outcome|instance):envoy_presign_[a-z0-9_]+:[a-z0-9_]+)",
                           RUNBOOK.read_text()))
    assert len(named) >= 10, named
    assert not named - recorded, sorted(named - recorded)
