"""Demo data, published through the admin API itself: cities, restaurants and their menus."""

import logging
import random
from dataclasses import dataclass
from typing import Any

import aiohttp

from models.cities import City

logger = logging.getLogger(__name__)

CUISINES = {
    "South Indian": ["Masala Dosa", "Idli Sambar", "Medu Vada", "Rava Upma", "Pongal", "Filter Coffee"],
    "North Indian": ["Butter Chicken", "Dal Makhani", "Paneer Tikka", "Garlic Naan", "Chole Bhature", "Lassi"],
    "Italian": ["Margherita", "Penne Arrabbiata", "Tiramisu", "Lasagne", "Risotto Funghi", "Bruschetta"],
    "Japanese": ["Salmon Nigiri", "Chicken Katsu", "Miso Soup", "Tonkotsu Ramen", "Gyoza", "Matcha Mochi"],
    "Mexican": ["Tacos al Pastor", "Burrito Bowl", "Nachos", "Quesadilla", "Churros", "Horchata"],
}
CATEGORIES = ["Starters", "Mains", "Sides", "Desserts", "Drinks"]


@dataclass(frozen=True, slots=True)
class SeedPlan:
    cities: tuple[str, ...]
    restaurants_per_city: int = 10
    items_per_restaurant: int = 34


def city_batches(city: str, plan: SeedPlan) -> list[list[dict[str, Any]]]:
    """One batch per restaurant: the restaurant, then its items (deterministic, so re-runs match)."""
    rng = random.Random(city)
    batches = []
    cuisines = sorted(CUISINES)
    for r in range(plan.restaurants_per_city):
        cuisine = cuisines[r % len(cuisines)]
        restaurant_id = f"{city}-r{r + 1:02d}"
        events: list[dict[str, Any]] = [
            {
                "type": "restaurant.upserted",
                "city": city,
                "restaurant_id": restaurant_id,
                "name": f"{cuisine} Kitchen {r + 1}",
            }
        ]
        dishes = CUISINES[cuisine]
        for i in range(plan.items_per_restaurant):
            dish = dishes[i % len(dishes)]
            events.append(
                {
                    "type": "item.upserted",
                    "city": city,
                    "restaurant_id": restaurant_id,
                    "item_id": f"{restaurant_id}-i{i + 1:03d}",
                    "name": dish if i < len(dishes) else f"{dish} #{i // len(dishes) + 1}",
                    "description": f"House {dish.lower()}",
                    "category": CATEGORIES[i % len(CATEGORIES)],
                    "price_cents": rng.randrange(99, 1999, 10) * 10,
                }
            )
        batches.append(events)
    return batches


def demo_cities(cities: tuple[City, ...]) -> tuple[str, ...]:
    """The cities the demo gives a menu: every city served but those marked launching."""
    return tuple(city.code for city in cities if not city.launching)


async def seed(base_url: str, admin_token: str, plan: SeedPlan) -> dict[str, int]:
    """Publish the demo menus; return items published per city. Callers seed only an empty event log."""
    published: dict[str, int] = {}
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with aiohttp.ClientSession(base_url, headers=headers) as session:
        for city in plan.cities:
            count = 0
            for events in city_batches(city, plan):
                async with session.post("/v1/admin/events", json={"events": events}) as response:
                    if response.status != 202:
                        raise RuntimeError(f"seeding {city} failed: {response.status} {await response.text()}")
                count += len(events) - 1
            published[city] = count
    return published
