"""Flask behind mtlsauth: werkzeug's or gunicorn's own TLS, or behind a TLS proxy.

Direct TLS with werkzeug's server (it puts the peer's leaf in environ["SSL_CLIENT_CERT"])::

    MTLS_CLIENT_CA=clients-ca.pem MTLS_INTERMEDIATES=intermediate.pem \\
        MTLS_SERVER_CERT=server.pem MTLS_SERVER_KEY=server.key python examples/flask_app.py

Under gunicorn with TLS (mtlsauth reads environ["gunicorn.socket"])::

    gunicorn -c gunicorn.conf.py 'flask_app:create_app()'

Behind nginx: set MTLS_TRUSTED_PROXIES=127.0.0.1 and leave MTLS_SERVER_CERT unset.
Settings are the same environment variables as examples/fastapi_app.py (PORT default 8443).
"""

from __future__ import annotations

import os
from pathlib import Path

import flask

from mtlsauth import ForwardedCert, MTLSAuthError, TrustStore, Verifier
from mtlsauth.adapters.wsgi import MTLSMiddleware, answer_refusal, identity_from_environ


def make_verifier() -> Verifier:
    proxies = [
        p.strip() for p in os.environ.get("MTLS_TRUSTED_PROXIES", "").split(",") if p.strip()
    ]
    intermediates = os.environ.get("MTLS_INTERMEDIATES")
    return Verifier(
        trust_store=TrustStore.from_pem_file(os.environ.get("MTLS_CLIENT_CA", "clients-ca.pem")),
        intermediates=[Path(intermediates).read_bytes()] if intermediates else (),
        forwarded=ForwardedCert.preset(
            "nginx",
            header=os.environ.get("MTLS_CERT_HEADER", "X-SSL-Client-Cert"),
            trusted_proxies=proxies,
        )
        if proxies
        else None,
    )


def create_app() -> flask.Flask:
    app = flask.Flask(__name__)
    app.wsgi_app = MTLSMiddleware(  # type: ignore[method-assign]
        app.wsgi_app,
        verifier=make_verifier(),
        mode=os.environ.get("MTLS_MODE", "mandatory"),  # type: ignore[arg-type]
        exempt_paths={"/healthz"},
    )

    @app.get("/whoami")
    def whoami() -> dict[str, str | None]:
        who = identity_from_environ(flask.request.environ)
        if who is None:
            return {"cn": None, "source": None}
        return {"cn": who.common_name, "source": who.source}

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "up"}

    @app.errorhandler(MTLSAuthError)
    def refused(error: MTLSAuthError):  # e.g. a view that checks a stricter Policy itself
        return answer_refusal(error, flask.request.environ)  # through on_error, on_decision

    return app


def main() -> None:
    from werkzeug.serving import run_simple

    ssl_context = None
    if os.environ.get("MTLS_SERVER_CERT"):
        from mtlsauth import server_ssl_context

        ssl_context = server_ssl_context(
            certfile=os.environ["MTLS_SERVER_CERT"],
            keyfile=os.environ.get("MTLS_SERVER_KEY"),
            trust_store=TrustStore.from_pem_file(
                os.environ.get("MTLS_CLIENT_CA", "clients-ca.pem")
            ),
            mode=os.environ.get("MTLS_TLS_MODE", "optional"),  # type: ignore[arg-type]
        )
    run_simple(
        os.environ.get("HOST", "127.0.0.1"),
        int(os.environ.get("PORT", "8443")),
        create_app(),
        ssl_context=ssl_context,
        threaded=True,
    )


if __name__ == "__main__":
    main()
