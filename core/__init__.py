"""The foundation every layer above imports: settings, names (topics, Redis keys), tokens, logging, build
info, the PostgreSQL schema and its read layer, the Kafka publisher and the system events it puts on city logs.
Imports nothing of the project but `models`."""
