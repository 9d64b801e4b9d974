"""Pure domain of Feast Flow: events, catalog state and how events change it. No I/O here."""
