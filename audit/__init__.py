"""The harness: what to run (claims, plan), running it (launch, store), judging it
(compare, check) and reporting it (report). Importing it never imports torch."""

from pathlib import Path

# The repository root: claims.yaml, templates/ and reports/ live here (editable install).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
