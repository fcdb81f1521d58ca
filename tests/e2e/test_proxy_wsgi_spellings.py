"""A forged underscore spelling of the certificate header, through each real proxy, into a
WSGI server that lets the later of two folded spellings win.

WSGI names a header ``HTTP_`` + its name in capitals with ``-`` as ``_``, so ``X-Client-Cert``
and ``X_Client_Cert`` are one environ key. nginx drops names with underscores; Apache,
HAProxy and Caddy pass them on. Twisted's WSGI container (``twisted.web.wsgi``) then writes
each name in the order the proxy sent it, the later overwriting the earlier: Caddy writes
its headers sorted (``-`` before ``_``), so the client's copy came last; Apache's
``RequestHeader set`` replaces the client's own ``X-SSL-Client-Cert`` in place, so a copy
spelled with underscores after it came last. Either way mtlsauth read the client's forged
value as the proxy's, and a client without any certificate was alice. Removing one
spelling is not enough (``X-Client_Cert`` is another): the proxy configurations in
``docs/proxies.md`` (and ``conftest.py``) now put the proxy's header after every spelling
(Apache: ``unset`` before ``set``; HAProxy's ``set-header`` appends) or remove them all
(Caddy's ``header_up -X_*``, HAProxy's ``del-header -m reg``); with them, no spelling of the
certificate header reaches the app.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from conftest import free_port, serve_process
from mtlsauth.testing import encode_forwarded

pytestmark = pytest.mark.e2e

_APP = """
import json, sys
from twisted.internet import reactor
from twisted.web.server import Site
from twisted.web.wsgi import WSGIResource
from mtlsauth import ForwardedCert, TrustStore, Verifier
from mtlsauth.adapters.wsgi import MTLSMiddleware, identity_from_environ

root, intermediate, port, preset = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
verifier = Verifier(
    trust_store=TrustStore.from_pem_file(root),
    forwarded=ForwardedCert.preset(preset, trusted_proxies=["127.0.0.1"]),
    intermediates=[open(intermediate, "rb").read()],
)

def app(environ, start_response):
    who = identity_from_environ(environ)
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"cn": who.common_name if who else None}).encode()]

site = Site(WSGIResource(reactor, reactor.getThreadPool(),
                         MTLSMiddleware(app, verifier=verifier, mode="optional")))
reactor.listenTCP(port, site, interface="127.0.0.1")
reactor.run()
"""


def _ask(pki: Any, url: str, headers: list[str], cert: str | None) -> dict[str, Any]:
    argv = ["curl", "-sS", "--max-time", "10", "--cacert", pki["root"]]
    argv += ["--resolve", f"{url.split('://')[1]}:127.0.0.1"]
    if cert:
        argv += [
            "--cert",
            pki[cert],
            "--key",
            pki["client_key" if cert != "wrong_cert" else "wrong_key"],
        ]
    for h in headers:
        argv += ["-H", h]
    done = subprocess.run([*argv, url + "/"], capture_output=True, timeout=20, check=True)
    return json.loads(done.stdout)


@pytest.mark.parametrize("name", ["nginx", "apache", "haproxy", "caddy"])
def test_underscore_spelling_never_reaches_a_wsgi_app(name, pki, start_proxy, tmp_path):
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(_APP))
    port = free_port()
    argv = [sys.executable, str(script), pki["root"], pki["intermediate"], str(port), name]
    with serve_process(argv, {}, tmp_path / "app.log", port, cwd=tmp_path):
        backend = type("Upstream", (), {"port": port})()
        url = start_proxy(name, backend).url
        # The genuine article first: alice's certificate reaches the app as alice.
        assert _ask(pki, url, [], "client_chain") == {"cn": "alice"}
        header, value = encode_forwarded(name, pki.client.chain_der)[0]
        for cert in (None, "wrong_cert"):
            for folded in _spellings(header):
                for headers in (
                    [f"{folded}: {value}"],
                    [f"{header}: x", f"{folded.lower()}: {value}"],
                ):
                    reply = _ask(pki, url, headers, cert)
                    assert reply.get("cn") != "alice", (name, cert, headers, reply)


def _spellings(header: str) -> list[str]:
    """Every spelling of ``header`` with one or more of its ``-`` as ``_``."""
    parts = header.split("-")
    out = []
    for mask in range(1, 2 ** (len(parts) - 1)):
        name = parts[0]
        for i, part in enumerate(parts[1:]):
            name += ("_" if mask >> i & 1 else "-") + part
        out.append(name)
    return out
