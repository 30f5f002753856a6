"""The plain-HTTP health app: /metrics, /healthz, /livez, /readyz as kube-apiserver words them."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

Readiness = Callable[[], list[tuple[str, str | None]]]
"""kube-apiserver's readyz checks, each with why it fails (None: passes)."""


def health_app(exposition: Callable[[], bytes], readiness: Readiness) -> web.Application:
    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def live(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def ready(request: web.Request) -> web.Response:
        # As kube-apiserver's /readyz: "ok", or one line per check; a failure's reason
        # only with ?verbose (the port is plain HTTP).
        checks = readiness()
        failed = any(reason is not None for _, reason in checks)
        verbose = "verbose" in request.query
        if not failed and not verbose:
            return web.Response(text="ok")
        lines = [
            f"[+]{name} ok"
            if reason is None
            else f"[-]{name} failed: {reason if verbose else 'reason withheld'}"
            for name, reason in checks
        ]
        lines.append(f"readyz check {'failed' if failed else 'passed'}")
        return web.Response(status=503 if failed else 200, text="\n".join(lines) + "\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", live)
    app.router.add_get("/livez", live)
    app.router.add_get("/readyz", ready)
    return app
