"""Versioned SQL migrations, applied in name order by feastflow.migrate."""
