"""Hello-world servers for the HTTP overhead measurement, bare or behind mtlsauth.

Configured by environment variables so the same module serves uvicorn, gunicorn and aiohttp:

* ``MTLSAUTH_BENCH_MODE``: ``bare`` (no middleware), ``mtls`` (the adapter in front) or, for
  uvicorn and aiohttp, ``empty`` (a pass-through middleware: what the server charges for any
  middleware);
* ``MTLSAUTH_BENCH_ROOT`` / ``MTLSAUTH_BENCH_INTERMEDIATE``: PEM files of the client CA.

``spin`` (uvicorn only, for ``benchmarks/amplification.py``) is the bare app after a loop of
pure Python work that takes ``MTLSAUTH_BENCH_SPIN_US`` microseconds in a loop of its own:
what a few microseconds of Python per request cost the server, whatever runs them.

With ``mtls`` the verifier trusts the root, knows the intermediate (nginx forwards the leaf
only) and believes the nginx header ``X-SSL-Client-Cert`` from 127.0.0.1 only.

Run directly: ``python benchmarks/http_apps.py asgi|aiohttp --port N`` (uvicorn with one
worker, or aiohttp's runner); gunicorn loads ``http_apps:flask_app()``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

BODY = b"hello, world\n"


def _verifier() -> Any:
    from mtlsauth import ForwardedCert, TrustStore, Verifier

    return Verifier(
        trust_store=TrustStore.from_pem_file(os.environ["MTLSAUTH_BENCH_ROOT"]),
        intermediates=[open(os.environ["MTLSAUTH_BENCH_INTERMEDIATE"]).read()],
        forwarded=ForwardedCert.preset(
            "nginx", header="X-SSL-Client-Cert", trusted_proxies=["127.0.0.1"]
        ),
    )


def _mode() -> str:
    mode = os.environ.get("MTLSAUTH_BENCH_MODE", "bare")
    if mode not in ("bare", "empty", "mtls", "spin"):
        raise SystemExit(f"MTLSAUTH_BENCH_MODE must be bare, empty, mtls or spin, not {mode!r}")
    return mode


def _mtls() -> bool:
    return _mode() == "mtls"


async def hello_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The smallest useful ASGI app: one response, no framework."""
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(BODY))],
        }
    )
    await send({"type": "http.response.body", "body": BODY})


async def pass_through_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An empty ASGI middleware around ``hello_asgi``: one more coroutine, nothing else."""
    await hello_asgi(scope, receive, send)


def _spin_loops(micros: float) -> range:
    """A ``range`` whose empty loop takes about ``micros`` µs here (best of five timings)."""
    import timeit

    probe = range(10_000)
    best = min(timeit.repeat("for _ in probe: pass", globals={"probe": probe}, number=20, repeat=5))
    per_loop = best / 20 / len(probe)
    return range(max(0, round(micros * 1e-6 / per_loop)))


def spinning_asgi() -> Any:
    loops = _spin_loops(float(os.environ.get("MTLSAUTH_BENCH_SPIN_US", "0")))

    async def spin(scope: dict[str, Any], receive: Any, send: Any) -> None:
        for _ in loops:
            pass
        await hello_asgi(scope, receive, send)

    return spin


def asgi_app() -> Any:
    if _mode() == "empty":
        return pass_through_asgi
    if _mode() == "spin":
        return spinning_asgi()
    if not _mtls():
        return hello_asgi
    from mtlsauth.adapters.asgi import MTLSMiddleware

    return MTLSMiddleware(hello_asgi, verifier=_verifier())


def flask_app() -> Any:
    from flask import Flask

    app = Flask("bench")

    @app.get("/")
    def hello() -> tuple[bytes, int, dict[str, str]]:
        return BODY, 200, {"content-type": "text/plain"}

    if _mtls():
        from mtlsauth.adapters.wsgi import MTLSMiddleware

        app.wsgi_app = MTLSMiddleware(app.wsgi_app, verifier=_verifier())  # type: ignore[method-assign]
    return app


def aiohttp_app() -> Any:
    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        return web.Response(body=BODY, content_type="text/plain")

    middlewares: list[Any] = []
    if _mtls():
        from mtlsauth.adapters.aiohttp import mtls_middleware

        middlewares.append(mtls_middleware(verifier=_verifier()))
    elif _mode() == "empty":

        @web.middleware
        async def pass_through(request: web.Request, handler: Any) -> web.StreamResponse:
            return await handler(request)  # type: ignore[no-any-return]

        middlewares.append(pass_through)
    app = web.Application(middlewares=middlewares)
    app.router.add_get("/", hello)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="benchmark hello-world server")
    parser.add_argument("kind", choices=["asgi", "aiohttp"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if args.kind == "asgi":
        import uvicorn

        uvicorn.run(
            asgi_app(),
            host="127.0.0.1",
            port=args.port,
            workers=1,
            access_log=False,
            log_level="warning",
            lifespan="off",
        )
    else:
        from aiohttp import web

        web.run_app(aiohttp_app(), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
