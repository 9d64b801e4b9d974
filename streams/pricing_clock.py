"""Time-boxed pricing rules: when a rule's effective_at or until passes, a tick event goes onto the city's
log, so the re-pricing happens in order with every other change and replays the same way."""

import logging

from models.events import PricingRuleTick, utc_now
from streams.app import Worker
from streams.handover_state import Phase
from streams.timers import worker_timer

logger = logging.getLogger(__name__)


def register_pricing_clock(worker: Worker) -> None:
    announced: set[tuple[str, str]] = set()

    @worker_timer(worker, 1.0)
    async def announce_rule_transitions() -> None:
        if worker.handover.phase is not Phase.PROJECTING:
            return  # the generation holding the log keeps the clock (streams.handover)
        now = utc_now()
        for city, pricing in list(worker.tables.cities()):
            due = pricing.next_transition(now)
            if due is None or due > now or (city, due) in announced:
                continue
            announced.add((city, due))
            await worker.send_system_event("pricing tick", [city], PricingRuleTick(), "system:pricing-clock", now)
            logger.info("pricing tick published", extra={"city": city})
