#!/usr/bin/env python3
"""Runs the binding's unittest modules for ctest: run_tests.py [MODULE ...] (default: all test_*.py).

Exit codes: 0 passed, 1 failed, 77 skipped, with a line starting "SKIP:" (ctest's
SKIP_RETURN_CODE / SKIP_REGULAR_EXPRESSION) when libfrugal cannot be found and FRUGAL_LIBRARY
is not set, or when every test that ran was skipped (e.g. ../shared is absent). Individual
skips inside a run that otherwise passed are listed, in lower case, and do not skip the run.
"""
from __future__ import annotations

import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


class _Result(unittest.TextTestResult):
    """Counts the tests that passed (a skipped class is one skip entry for all its tests)."""

    passed = 0

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed += 1


def main(argv) -> int:
    try:
        import _support  # noqa: F401  (imports frugal)
    except ImportError as e:
        if os.environ.get("FRUGAL_LIBRARY"):
            print(f"frugal could not be imported: {e}")
            return 1
        print(f"SKIP: frugal could not be imported (set FRUGAL_LIBRARY): {e}")
        return 77
    loader = unittest.TestLoader()
    if argv:
        suite = loader.loadTestsFromNames(argv)
    else:
        suite = loader.discover(HERE, pattern="test_*.py", top_level_dir=HERE)
    t0 = time.monotonic()
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout, resultclass=_Result).run(suite)
    dt = time.monotonic() - t0
    if not result.wasSuccessful():
        return 1
    if result.skipped:
        print(f"skipped ({len(result.skipped)}):")
        for test, reason in result.skipped:
            print(f"  {test.id()}: {reason}")
    if result.passed == 0:
        reasons = sorted({reason for _, reason in result.skipped}) or ["no tests ran"]
        print("SKIP: " + "; ".join(reasons))
        return 77
    print(f"{result.passed} tests passed in {dt:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
