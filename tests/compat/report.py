"""Count how many original Blocks and Fuel test functions pass here.

Run from the repository root::

    python tests/compat/report.py            # all three suites
    python tests/compat/report.py fuel       # one suite

It runs ``tests/compat`` under pytest, maps each ported test's outcome back
to the originals it cites (``@pytest.mark.ported``), and prints one line per
suite, e.g. "131 of 141 original Blocks model-side test functions pass, 7 xfail
(listed in docs/porting.md), 3 not ported". It exits non-zero when a ported
test fails or an xfail reason is missing from ``docs/porting.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.compat._citations import ROOT, SUITES, manifest, static_xfail_reasons  # noqa: E402


class _Collect:
    def __init__(self):
        self.outcomes: dict[str, list[str]] = {}

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        cited = [a for m in item.iter_markers("ported") for a in m.args]
        if report.when == "setup" and report.skipped:
            state = "skip"
        elif report.when != "call":
            if report.failed:
                state = "fail"
            else:
                return
        elif hasattr(report, "wasxfail"):
            state = "xfail" if report.skipped else "fail"  # strict xpass fails
        else:
            state = "pass" if report.passed else ("skip" if report.skipped else "fail")
        for original in cited:
            self.outcomes.setdefault(original, []).append(state)


def summarize(outcomes: dict[str, list[str]], suite: str) -> tuple[str, dict[str, int]]:
    project, side, _ = SUITES[suite]
    counts = {"pass": 0, "xfail": 0, "fail": 0, "skip": 0, "unported": 0}
    for original in manifest(suite):
        states = outcomes.get(original)
        if not states:
            counts["unported"] += 1
        elif "fail" in states:
            counts["fail"] += 1
        elif "xfail" in states:
            counts["xfail"] += 1
        elif "skip" in states:
            counts["skip"] += 1
        else:
            counts["pass"] += 1
    total = len(manifest(suite))
    what = f"original {project} {side + ' ' if side else ''}test functions"
    line = (
        f"{counts['pass']} of {total} {what} pass ({100 * counts['pass'] / total:.0f}%), "
        f"{counts['xfail']} xfail (listed in docs/porting.md), {counts['skip']} skipped, "
        f"{counts['fail']} fail, {counts['unported']} not ported"
    )
    return line, counts


def main(argv: list[str]) -> int:
    suites = argv or list(SUITES)
    collect = _Collect()
    pytest.main(["-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "compat")], plugins=[collect])
    status = 0
    porting = (ROOT / "docs" / "porting.md").read_text()
    for path, reasons in static_xfail_reasons().items():
        for reason in reasons:
            if reason not in porting:
                print(f"xfail reason not in docs/porting.md ({path}): {reason!r}")
                status = 1
    for suite in suites:
        line, counts = summarize(collect.outcomes, suite)
        print(line)
        if counts["fail"]:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
