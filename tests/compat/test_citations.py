"""The compat suites cite real originals, and every xfail is in the porting guide."""

from ._citations import ROOT, SUITES, manifest, static_citations, static_xfail_reasons


def test_every_citation_names_an_original_test():
    known = {entry for suite in SUITES for entry in manifest(suite)}
    unknown = [
        (path, cited)
        for path, cites in static_citations().items()
        for cited in cites
        if cited not in known
    ]
    assert not unknown, f"citations of tests that are in no manifest: {unknown}"


def test_every_xfail_reason_is_in_the_porting_guide():
    porting = (ROOT / "docs" / "porting.md").read_text()
    missing = [
        (path, reason)
        for path, reasons in static_xfail_reasons().items()
        for reason in reasons
        if reason not in porting
    ]
    assert not missing, f"xfail reasons missing from docs/porting.md: {missing}"
