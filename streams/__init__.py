"""Faust stream workers: Kafka topics are the source of truth, tables and Redis are materialised views."""
