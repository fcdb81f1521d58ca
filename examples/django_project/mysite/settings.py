"""Settings of the example Django project protected by mtlsauth.

The mtlsauth parts are ``MIDDLEWARE``, ``AUTHENTICATION_BACKENDS``, ``MTLSAUTH*`` and
``REST_FRAMEWORK``. File locations come from the environment so the same project runs with
direct TLS and behind a proxy (``mtlsauth testca pki`` writes such files):

    MTLS_CLIENT_CA        the CA that issues client certificates (ca.pem)
    MTLS_INTERMEDIATES    intermediates for clients that send their leaf only (optional)
    MTLS_TRUSTED_PROXIES  comma-separated proxy addresses allowed to forward a certificate
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-change-me")
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
ROOT_URLCONF = "mysite.urls"
WSGI_APPLICATION = "mysite.wsgi.application"
USE_TZ = True

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "rest_framework",
]
# No sessions: the certificate authenticates every request, and MTLSMiddleware sets
# request.user (add AuthenticationMiddleware before it if the site also has logins).
MIDDLEWARE = [
    "mtlsauth.adapters.django.MTLSMiddleware",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("MTLS_DB", str(BASE_DIR / "db.sqlite3")),
    }
}

# -- mtlsauth ---------------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = ["mtlsauth.adapters.django.MTLSBackend"]
MTLSAUTH_USERNAME = "common_name"
MTLSAUTH_CREATE_USERS = os.environ.get("MTLS_CREATE_USERS") == "1"

_trust: dict[str, object] = {"files": [os.environ.get("MTLS_CLIENT_CA", "pki/ca.pem")]}
if os.environ.get("MTLS_INTERMEDIATES"):
    _trust["intermediates"] = [os.environ["MTLS_INTERMEDIATES"]]

MTLSAUTH: dict[str, object] = {  # the schema of mtlsauth's TOML configuration, as a dict
    "mode": "mandatory",
    "exempt_paths": ["/healthz"],
    "trust": _trust,
}
if os.environ.get("MTLS_TRUSTED_PROXIES"):
    MTLSAUTH["forwarded"] = {
        "preset": "nginx",
        "header": "X-SSL-Client-Cert",
        "trusted_proxies": os.environ["MTLS_TRUSTED_PROXIES"].split(","),
    }

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["mtlsauth.adapters.drf.MTLSAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["mtlsauth.adapters.drf.HasClientCertificate"],
    "UNAUTHENTICATED_USER": None,
}
