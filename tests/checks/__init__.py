"""Unit tests of harness.checks: every check shown to pass and, on a case built to fail, to fail."""
