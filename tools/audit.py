"""``make audit``: known advisories against ``requirements.lock``, or one plain line why not.

Runs ``pip-audit`` on the lock's exact pins (``--no-deps``: the lock is the whole tree;
``--disable-pip``: nothing is installed to resolve it) and reads its JSON report.
pip-audit counts a package it could not look up as *skipped* and still says "No known
vulnerabilities found" with exit 0, and it answers an unreachable service with a stack
trace. Neither is an audit, so both end here in one line and a non-zero exit:

* 0  every pinned package was looked up, none has a known advisory;
* 1  advisories found (one line each, with the versions that fix them);
* 2  the audit could not be made: the vulnerability data was not reachable, or some
     packages could not be looked up.

``python -m tools.audit [REQUIREMENTS] [-- extra pip-audit arguments]``; ``make audit
AUDIT_ARGS="-s osv"`` asks OSV instead of PyPI's JSON API.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

PREFIX = "make audit:"
OK, VULNERABLE, NOT_AUDITED = 0, 1, 2
TIMEOUT_SECONDS = 600


@dataclass(frozen=True)
class Verdict:
    code: int
    lines: list[str]


def judge(returncode: int, stdout: str, stderr: str, source: str) -> Verdict:
    """What a pip-audit run (``-f json``) found, as lines for a person and an exit code."""
    try:
        report = json.loads(stdout)
        dependencies = report["dependencies"]
    except (ValueError, TypeError, KeyError):
        return Verdict(NOT_AUDITED, [f"{PREFIX} {_unreachable(returncode, stderr, source)}"])

    skipped = [d for d in dependencies if d.get("skip_reason")]
    audited = [d for d in dependencies if not d.get("skip_reason")]
    if dependencies and not audited:
        first = skipped[0]["skip_reason"]
        return Verdict(
            NOT_AUDITED,
            [
                f"{PREFIX} cannot reach pip-audit's vulnerability data ({source}): none of the "
                f"{len(dependencies)} pinned packages could be looked up (first: {first}); "
                "nothing was audited"
            ],
        )

    lines = []
    found = [(d, v) for d in audited for v in d.get("vulns") or ()]
    for dep, vuln in found:
        fixes = ", ".join(vuln.get("fix_versions") or ()) or "no fixed version yet"
        aliases = ", ".join(vuln.get("aliases") or ())
        also = f" ({aliases})" if aliases else ""
        lines.append(f"{dep['name']}=={dep['version']}: {vuln['id']}{also}; fixed in {fixes}")
    if skipped:
        names = ", ".join(d["name"] for d in skipped)
        lines.append(f"{PREFIX} {len(skipped)} pinned packages could not be audited: {names}")
        return Verdict(NOT_AUDITED, lines)
    if found:
        lines.append(f"{PREFIX} {len(found)} known advisories in {len(audited)} pinned packages")
        return Verdict(VULNERABLE, lines)
    return Verdict(OK, [f"{PREFIX} {len(audited)} pinned packages, no known advisories"])


# What a failed lookup leaves as pip-audit's last error line (requests' and its own).
NETWORK_ERRORS = (
    "ConnectionError",
    "NameResolution",
    "Timeout",
    "Max retries",
    "SSLError",
    "HTTPError",
    "ServiceError",
)


def _unreachable(returncode: int, stderr: str, source: str) -> str:
    """One line from a run that produced no report: its last error line, shortened."""
    errors = [line.strip() for line in stderr.splitlines() if line.strip()]
    last = errors[-1] if errors else f"pip-audit exited {returncode} with no report"
    if len(last) > 240:
        last = last[:237] + "..."
    if any(marker in last for marker in NETWORK_ERRORS):
        return (
            f"cannot reach pip-audit's vulnerability data ({source}): {last}; nothing was audited"
        )
    return f"pip-audit failed: {last}; nothing was audited"


def _source(extra: list[str]) -> str:
    for i, arg in enumerate(extra):
        if arg in ("-s", "--vulnerability-service") and i + 1 < len(extra):
            return extra[i + 1]
        if arg.startswith("--vulnerability-service="):
            return arg.split("=", 1)[1]
    return "pypi"


def main(argv: list[str]) -> int:
    requirements, extra = "requirements.lock", []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1 :]
    if argv:
        requirements = argv[0]
    command = [
        sys.executable,
        "-m",
        "pip_audit",
        "--requirement",
        requirements,
        "--no-deps",
        "--disable-pip",
        "--progress-spinner",
        "off",
        "--format",
        "json",
        *extra,
    ]
    source = _source(extra)
    try:
        run = subprocess.run(  # noqa: S603 (our own interpreter and fixed arguments)
            command, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False
        )
    except subprocess.TimeoutExpired:
        print(
            f"{PREFIX} pip-audit ({source}) gave no answer in {TIMEOUT_SECONDS} s; "
            "nothing was audited"
        )
        return NOT_AUDITED
    verdict = judge(run.returncode, run.stdout, run.stderr, source)
    print("\n".join(verdict.lines))
    return verdict.code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
