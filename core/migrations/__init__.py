"""Versioned SQL migrations, applied in name order by core.schema."""
