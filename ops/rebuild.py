"""Ask the workers to rewrite a city's read model in Redis from their tables.

The request is an event on the city's own log, so it is applied in order with every other change:
no race between the rebuild and live updates. SSE clients receive a fresh snapshot when it lands.
"""

from core.settings import Settings
from core.system_events import publish_system_event
from models.events import ProjectionRebuild

REBUILD_ACTOR = "system:rebuild-projection"


async def request_rebuild(settings: Settings, cities: tuple[str, ...]) -> None:
    await publish_system_event(settings, cities, ProjectionRebuild(), REBUILD_ACTOR)
