"""The same three routes in every framework, served by a real server (run as a script).

Routes: ``/public/<rest>`` (exempt), ``/admin/<rest>`` (``Route`` with an ``admins``
policy) and ``/<account>`` (one segment, mandatory under the default policy). Each handler
answers ``{"handler": <name>, "org": <the identity's organization or null>}``, so the test
can tell which handler ran and what the guard let through.

Usage: python _router_apps.py <variant> <port> <root-ca.pem>
"""

from __future__ import annotations

import json
import sys
from typing import Any

from mtlsauth import ForwardedCert, Policy, Route, TrustStore, Verifier

CONFIG: dict[str, Any] = {
    "mode": "mandatory",
    "exempt_paths": {"/public/*"},
    "routes": [Route("/admin/*", policy=Policy(organizations={"admins"}))],
}


def verifier(root: str) -> Verifier:
    return Verifier(
        trust_store=TrustStore.from_pem_file(root),
        policy=Policy(organizations={"payments", "admins"}),
        forwarded=ForwardedCert.preset(
            "nginx", header="X-SSL-Client-Cert", trusted_proxies=["127.0.0.1"]
        ),
    )


def body(handler: str, identity: Any) -> bytes:
    org = identity.organization if identity is not None else None
    return json.dumps({"handler": handler, "org": org}).encode()


def starlette_app(root: str) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route as SRoute

    from mtlsauth.adapters.asgi import MTLSMiddleware, identity_from_scope

    def view(name: str) -> Any:
        async def endpoint(request: Request) -> Response:
            return Response(body(name, identity_from_scope(request.scope)))

        return endpoint

    inner = Starlette(
        routes=[
            SRoute("/public/{rest:path}", view("public")),
            SRoute("/admin/{rest:path}", view("admin")),
            SRoute("/{account}", view("account")),
        ]
    )
    return MTLSMiddleware(inner, verifier=verifier(root), **CONFIG)


def serve_starlette(variant: str, port: int, root: str) -> None:
    import uvicorn

    app: Any = starlette_app(root)
    root_path = ""
    if variant == "starlette-mount":
        from starlette.applications import Starlette
        from starlette.routing import Mount

        app = Starlette(routes=[Mount("/v1", app=app)])
    elif variant == "starlette-root-path":
        root_path = "/api"
    uvicorn.run(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", root_path=root_path
    )


def serve_flask(port: int, root: str, *, mounted: bool = False) -> None:
    from flask import Flask
    from werkzeug.serving import run_simple

    from mtlsauth.adapters.wsgi import MTLSMiddleware, identity_from_environ

    app = Flask(__name__)

    def view(name: str) -> Any:
        def endpoint(**_kw: str) -> Any:
            from flask import request

            return body(name, identity_from_environ(request.environ))

        endpoint.__name__ = name
        return endpoint

    app.add_url_rule("/public/<path:rest>", view_func=view("public"))
    app.add_url_rule("/admin/<path:rest>", view_func=view("admin"))
    app.add_url_rule("/<account>", view_func=view("account"))
    app.wsgi_app = MTLSMiddleware(app.wsgi_app, verifier=verifier(root), **CONFIG)  # type: ignore[method-assign]
    served: Any = app
    if mounted:  # under SCRIPT_NAME=/v1, as a dispatcher or a server prefix puts it
        from werkzeug.middleware.dispatcher import DispatcherMiddleware
        from werkzeug.wrappers import Response

        served = DispatcherMiddleware(Response("not here", status=404), {"/v1": app})
    run_simple("127.0.0.1", port, served, threaded=True)


def serve_django(port: int, root: str, *, own_middleware: bool = False) -> None:
    import django
    from django.conf import settings
    from django.http import HttpResponse
    from django.urls import path

    from mtlsauth.adapters.wsgi import MTLSMiddleware, identity_from_environ

    def view(name: str) -> Any:
        def endpoint(request: Any, **_kw: str) -> HttpResponse:
            if own_middleware:
                from mtlsauth.adapters.django import identity_from_request

                return HttpResponse(body(name, identity_from_request(request)))
            return HttpResponse(body(name, identity_from_environ(request.META)))

        return endpoint

    module = sys.modules[__name__]
    module.urlpatterns = [  # type: ignore[attr-defined]
        path("public/<path:rest>", view("public")),
        path("admin/<path:rest>", view("admin")),
        path("<str:account>", view("account")),
    ]
    mtlsauth = {  # the same rules, for mtlsauth's own Django middleware
        "trust": {"files": [root]},
        "policy": {"organizations": ["payments", "admins"]},
        "forwarded": {
            "preset": "nginx",
            "header": "X-SSL-Client-Cert",
            "trusted_proxies": ["127.0.0.1"],
        },
        "mode": "mandatory",
        "exempt_paths": ["/public/*"],
        "routes": [{"path": "/admin/*", "policy": {"organizations": ["admins"]}}],
    }
    settings.configure(
        DEBUG=False,
        SECRET_KEY="test-only",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=["mtlsauth.adapters.django.MTLSMiddleware"] if own_middleware else [],
        MTLSAUTH=mtlsauth,
        INSTALLED_APPS=[],
        USE_TZ=True,
    )
    django.setup()
    from django.core.wsgi import get_wsgi_application
    from gunicorn.app.base import BaseApplication

    application: Any = get_wsgi_application()
    if own_middleware:
        # Mounted under a script prefix, as gunicorn's SCRIPT_NAME or a proxy's prefix does.
        inner = application

        def application(environ: Any, start_response: Any) -> Any:
            path = environ.get("PATH_INFO", "")
            if not path.startswith("/v1"):
                start_response("404 Not Found", [("Content-Length", "0")])
                return [b""]
            environ["SCRIPT_NAME"], environ["PATH_INFO"] = "/v1", path[3:]
            return inner(environ, start_response)

    else:
        application = MTLSMiddleware(application, verifier=verifier(root), **CONFIG)

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"127.0.0.1:{port}")
            self.cfg.set("workers", 1)
            self.cfg.set("loglevel", "warning")

        def load(self) -> Any:
            return application

    Server().run()


def serve_aiohttp(port: int, root: str) -> None:
    from aiohttp import web

    from mtlsauth.adapters.aiohttp import get_identity, mtls_middleware

    def view(name: str) -> Any:
        async def endpoint(request: web.Request) -> web.Response:
            return web.Response(body=body(name, get_identity(request)))

        return endpoint

    app = web.Application(middlewares=[mtls_middleware(verifier=verifier(root), **CONFIG)])
    app.router.add_get("/public/{rest:.*}", view("public"))
    app.router.add_get("/admin/{rest:.*}", view("admin"))
    app.router.add_get("/{account}", view("account"))
    web.run_app(app, host="127.0.0.1", port=port, print=None)


def main() -> None:
    variant, port, root = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if variant.startswith("starlette"):
        serve_starlette(variant, port, root)
    elif variant == "flask":
        serve_flask(port, root)
    elif variant == "flask-mount":
        serve_flask(port, root, mounted=True)
    elif variant == "django":
        serve_django(port, root)
    elif variant == "django-middleware":
        serve_django(port, root, own_middleware=True)
    elif variant == "aiohttp":
        serve_aiohttp(port, root)
    else:
        raise SystemExit(f"unknown variant {variant}")


if __name__ == "__main__":
    main()
