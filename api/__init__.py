"""Thin, stateless aiohttp API pods: reads from Redis, SSE fan-out, validated writes to Kafka."""
