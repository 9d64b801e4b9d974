"""Entry point of a stream worker process: `feastflow worker`."""

import asyncio
import logging

import faust

from core.build import announce
from core.logs import logging_config
from core.settings import Settings
from core.topic_admin import ensure_topics
from streams.app import Worker, WorkerService, create_app
from streams.catalog_agent import register_catalog_agent
from streams.gauges import register_gauge_sampler
from streams.guarded_agent import register_stall_watchdog
from streams.handover import register_handover
from streams.operator_views import register_operator_views
from streams.order_agent import register_order_agent
from streams.pricing_clock import register_pricing_clock
from streams.read_model_watch import register_read_model_watch
from streams.shadow import register_shadow_comparison, register_track_watch

logger = logging.getLogger(__name__)


def build_worker(settings: Settings) -> Worker:
    worker = create_app(settings)
    announce(worker.service.value)
    register_catalog_agent(worker)
    if worker.service.runs_orders:
        register_order_agent(worker)
    if worker.service.projects_catalog:
        register_pricing_clock(worker)
        register_read_model_watch(worker)
    register_handover(worker)
    if worker.service is WorkerService.SHADOW:
        register_shadow_comparison(worker)
    else:
        register_gauge_sampler(worker)  # the shadow reports its own lag: the stable lag alerts stay about stable
    if worker.settings.track_file:
        register_track_watch(worker)
    register_stall_watchdog(worker)
    register_operator_views(worker)
    return worker


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    asyncio.run(_topics_created(settings))
    worker = build_worker(settings)
    faust.Worker(
        worker.app, loglevel=loglevel, quiet=True, logging_config=logging_config(loglevel.upper())
    ).execute_from_commandline()


async def _topics_created(settings: Settings) -> None:
    """Before Faust starts: this generation's changelogs (a rollout's successor has a group of its own) and the
    project's topics, created unless they exist. Kafka may not answer yet: wait for it, as Faust would."""
    pause = 0.5
    while True:
        try:
            created = await ensure_topics(settings)
        except Exception as exc:  # Kafka not reachable yet (a cold start of the whole stack): try again
            logger.warning("cannot create topics yet (%r); again in %.1fs", exc, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)
            continue
        if created:
            logger.info("created topics %s", ", ".join(created))
        return
