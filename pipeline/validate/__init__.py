"""validate stage: suites in expectations/, row rules -> audit_quarantine, GX -> audit_validation.

See docs/validation.md for which failures quarantine rows and which stop the run.
"""

from pipeline.validate.runner import CheckResult, ValidationReport, run

__all__ = ["CheckResult", "ValidationReport", "run"]
