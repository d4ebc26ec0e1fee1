"""Where the tests' inputs live, wherever a test file sits under tests/."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the checkout
FIXTURES = ROOT / "tests" / "fixtures"  # reference outputs of peer tools, written by benchmarks/ scripts
