"""``make audit`` (``tools/audit.py``): an audit, or one plain line saying why there is none.

pip-audit's own answers are fed in as it gives them (its JSON report, its stderr), so
each verdict is checked without the network; one run of the real pip-audit checks that a
failure ends in one line and an exit code, not a stack trace.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tools import audit

ROOT = Path(__file__).resolve().parents[1]

SKIPPED = "Dependency not found on PyPI and could not be audited: {} ({})"


def report(*dependencies: dict) -> str:
    return json.dumps({"dependencies": list(dependencies), "fixes": []})


def skipped(name: str, version: str) -> dict:
    return {"name": name, "skip_reason": SKIPPED.format(name, version)}


def clean(name: str, version: str) -> dict:
    return {"name": name, "version": version, "vulns": []}


def test_no_data_for_any_package_is_not_an_audit():
    """pip-audit itself exits 0 and says "No known vulnerabilities found" here."""
    stdout = report(skipped("flask", "3.1.3"), skipped("stripe", "16.1.0"))
    verdict = audit.judge(0, stdout, "", "pypi")
    assert verdict.code == audit.NOT_AUDITED
    [line] = verdict.lines
    assert line.startswith("make audit: cannot reach pip-audit's vulnerability data (pypi)")
    assert "none of the 2 pinned packages" in line and line.endswith("nothing was audited")


def test_an_unreachable_service_is_one_line_not_a_stack_trace():
    stderr = (
        "Traceback (most recent call last):\n"
        '  File "requests/adapters.py", line 729, in send\n'
        "requests.exceptions.ConnectionError: HTTPSConnectionPool(host='api.osv.dev', "
        "port=443): Max retries exceeded with url: /v1/query\n"
    )
    verdict = audit.judge(1, "", stderr, "osv")
    assert verdict.code == audit.NOT_AUDITED
    [line] = verdict.lines
    assert line.startswith("make audit: cannot reach pip-audit's vulnerability data (osv): ")
    assert "requests.exceptions.ConnectionError" in line and "Traceback" not in line


def test_some_packages_not_looked_up_fail_the_audit():
    stdout = report(clean("flask", "3.1.3"), skipped("stripe", "16.1.0"))
    verdict = audit.judge(0, stdout, "", "pypi")
    assert verdict.code == audit.NOT_AUDITED
    assert verdict.lines == ["make audit: 1 pinned packages could not be audited: stripe"]


def test_advisories_are_listed_with_their_fixes():
    vuln = {
        "id": "PYSEC-2099-1",
        "fix_versions": ["3.1.10"],
        "aliases": ["CVE-2099-1"],
        "description": "details",
    }
    stdout = report(
        clean("flask", "3.1.3"), {"name": "werkzeug", "version": "3.1.9", "vulns": [vuln]}
    )
    verdict = audit.judge(1, stdout, "", "pypi")
    assert verdict.code == audit.VULNERABLE
    assert verdict.lines == [
        "werkzeug==3.1.9: PYSEC-2099-1 (CVE-2099-1); fixed in 3.1.10",
        "make audit: 1 known advisories in 2 pinned packages",
    ]


def test_every_package_looked_up_and_clean_passes():
    verdict = audit.judge(0, report(clean("flask", "3.1.3")), "", "pypi")
    assert verdict.code == audit.OK
    assert verdict.lines == ["make audit: 1 pinned packages, no known advisories"]


def test_the_real_pip_audit_failing_ends_in_one_line_and_a_non_zero_exit(tmp_path):
    missing = tmp_path / "no-such.lock"
    run = subprocess.run(
        [sys.executable, "-m", "tools.audit", str(missing)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == audit.NOT_AUDITED
    assert run.stderr == ""
    [line] = run.stdout.splitlines()
    assert line.startswith("make audit: pip-audit failed: ") and str(missing) in line
