"""gunicorn settings for the soak (gthread worker, direct TLS when SOAK_SERVER_CERT is set)."""

import os

bind = "127.0.0.1:" + os.environ["PORT"]
workers = 1
threads = 4
worker_class = "gthread"
loglevel = "warning"
if os.environ.get("SOAK_SERVER_CERT"):
    certfile = os.environ["SOAK_SERVER_CERT"]
    keyfile = os.environ["SOAK_SERVER_KEY"]

    def ssl_context(conf, default_ssl_context_factory):  # type: ignore[no-untyped-def]
        from soak_app import tls_context

        return tls_context()
