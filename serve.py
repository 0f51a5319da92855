"""The prediction endpoint (issue 3)."""
