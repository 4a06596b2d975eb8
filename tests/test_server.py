"""gateway/server.py: the app's endpoints and how a request finds its route."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from gateway.config.routes import RESERVED_PATHS
from gateway.server import build_app, dispatch
from tests.support.gateway import config_from

ROUTES = [
    {"name": "chat", "provider": "simulated"},
    {"name": "b", "provider": "simulated", "path": "/api/b/"},
]


def _app(**server: object) -> web.Application:
    return build_app(config_from({"routes": ROUTES, "server": server}))


def test_every_fixed_path_the_app_serves_is_reserved() -> None:
    """A route may not take a path the gateway answers itself (front doors included): its
    requests would never reach it."""
    fixed = {
        resource.canonical
        for resource in _app(playground=True).router.resources()
        if "{" not in resource.canonical and not resource.canonical.startswith("/static")
    }
    fixed -= {"/v1/stream/chat", "/api/b/"}  # the routes' own paths
    assert fixed <= RESERVED_PATHS, sorted(fixed - RESERVED_PATHS)


async def test_start_up_routes_resolve_to_their_exact_path() -> None:
    app = _app()
    app.freeze()
    for path in ("/v1/stream/chat", "/api/b/"):
        match = await app.router.resolve(make_mocked_request("POST", path, app=app))
        assert match.handler is dispatch
        assert match.route.resource is not None
        assert match.route.resource.canonical == path  # not the catch-all
    other = await app.router.resolve(make_mocked_request("POST", "/v1/stream/new", app=app))
    assert other.handler is dispatch  # a route a reload adds: the catch-all, same handler
    assert other.route.resource is not None and "{" in other.route.resource.canonical
