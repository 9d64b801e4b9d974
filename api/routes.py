"""Every route of an API pod."""

from aiohttp import web

from api import admin_views, menu_views, ops_views, order_views, pages
from api.openapi import openapi_document


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", ops_views.healthz)
    app.router.add_get("/readyz", ops_views.readyz)
    app.router.add_get("/metrics", ops_views.metrics)
    app.router.add_get("/v1/openapi.json", openapi_document)
    app.router.add_get("/v1/cities", menu_views.list_cities)
    app.router.add_get("/v1/cities/{city}/menu", menu_views.get_menu)
    app.router.add_get("/v1/cities/{city}/menu/stream", menu_views.menu_stream)
    app.router.add_get("/v1/cities/{city}/pricing", menu_views.get_pricing)
    app.router.add_post("/v1/admin/events", admin_views.publish_events)
    app.router.add_get("/v1/admin/events/{event_id}", admin_views.event_status)
    app.router.add_get("/v1/admin/items/{city}/{item_id}/history", admin_views.item_history)
    app.router.add_post("/v1/orders", order_views.place_order)
    app.router.add_get("/v1/orders/{order_id}", order_views.get_order)
    app.router.add_get("/v1/orders/{order_id}/stream", order_views.order_stream)
    app.router.add_post("/v1/orders/{order_id}/status", order_views.advance_order)
    app.router.add_get("/", pages.to_customer_page)
    app.router.add_get("/app", pages.to_customer_page)
    app.router.add_get("/app/", pages.customer_page)
    app.router.add_get("/admin", pages.to_admin_page)
    app.router.add_get("/admin/", pages.admin_page)
    app.router.add_get("/ui/{digest}/{name}", pages.ui_asset)
