"""Process-level glue shared by the API pods and the stream workers: settings, storage layout, CLI."""
