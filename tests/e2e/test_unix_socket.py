"""nginx -> uvicorn over a Unix-domain socket: the proxy has no peer address to trust.

``trusted_proxies=["unix"]`` is the explicit opt-in for that deployment; without it a
certificate header from a socket peer is refused like any other untrusted forwarder.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mtlsauth import ForwardedCert, Presented, UntrustedForwarder, Verifier
from mtlsauth.adapters import UNIX_PEER
from mtlsauth.testing import CA, encode_forwarded


@pytest.mark.parametrize(
    ("proxies", "peer", "trusted"),
    [
        pytest.param(["unix"], UNIX_PEER, True, id="unix: a Unix-socket peer"),
        pytest.param(["unix"], None, False, id="unix: no peer address is unknown, not a socket"),
        pytest.param(["unix"], "", False, id="unix: empty REMOTE_ADDR is unknown"),
        pytest.param(["unix"], "unix", False, id="unix: the string 'unix' is no socket"),
        pytest.param(["unix"], "127.0.0.1", False, id="unix does not trust loopback TCP"),
        pytest.param(["127.0.0.1"], UNIX_PEER, False, id="an address list does not trust sockets"),
        pytest.param(["unix", "10.0.0.0/8"], "10.1.2.3", True, id="both: a TCP proxy"),
        pytest.param(["unix", "10.0.0.0/8"], UNIX_PEER, True, id="both: a socket peer"),
        pytest.param(["unix", "10.0.0.0/8"], None, False, id="both: an unknown peer"),
    ],
)
def test_unix_entry_trusts_only_unix_socket_peers(
    proxies: list[str], peer: str | None, trusted: bool
) -> None:
    fwd = ForwardedCert.preset("nginx", header="X-SSL-Client-Cert", trusted_proxies=proxies)
    assert fwd.is_trusted(peer) is trusted


def test_unix_peer_survives_pickling_as_itself() -> None:
    import pickle

    assert pickle.loads(pickle.dumps(UNIX_PEER)) is UNIX_PEER  # noqa: S301 - our own bytes


def test_socket_peer_needs_the_opt_in() -> None:
    ca = CA()
    cert = ca.issue_client_cert(common_name="svc")
    headers = tuple((k.lower(), v) for k, v in encode_forwarded("nginx", cert.chain_der))
    for peer, proxies, ok in (
        (UNIX_PEER, ["unix"], True),
        (UNIX_PEER, ["127.0.0.1"], False),
        (None, ["unix"], False),
    ):
        presented = Presented(peer=peer, headers=headers)
        verifier = Verifier(
            trust_store=ca.trust_store(),
            forwarded=ForwardedCert.preset(
                "nginx", header="X-SSL-Client-Cert", trusted_proxies=proxies
            ),
        )
        if ok:
            identity = verifier.authenticate(presented)
            assert identity is not None
            assert identity.common_name == "svc"
        else:
            with pytest.raises(UntrustedForwarder):
                verifier.authenticate(presented)


APP = """
import json, sys
import uvicorn
from mtlsauth import ForwardedCert, TrustStore, Verifier
from mtlsauth.adapters.asgi import MTLSMiddleware, identity_from_scope

root, intermediate, sock = sys.argv[1:4]

async def hello(scope, receive, send):
    who = identity_from_scope(scope)
    body = json.dumps({"common_name": who.common_name, "source": who.source}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})

verifier = Verifier(
    trust_store=TrustStore.from_pem_file(root),
    intermediates=[open(intermediate).read()],  # nginx forwards the leaf only
    forwarded=ForwardedCert.preset(
        "nginx", header="X-SSL-Client-Cert", trusted_proxies=["unix"]
    ),
)
uvicorn.run(MTLSMiddleware(hello, verifier=verifier), uds=sock, log_level="warning",
            lifespan="off")
"""


@pytest.fixture
def nginx_to_unix_socket(pki: Any, tmp_path: Path, proxy_tools: Any) -> Iterator[str]:
    proxy_tools.require_binary("/usr/sbin/nginx")
    sock = tmp_path / "app.sock"
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(APP))
    log = (tmp_path / "app.log").open("wb")
    app = subprocess.Popen(
        [sys.executable, str(script), pki["root"], pki["intermediate"], str(sock)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 15
        while not sock.exists():
            if app.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"uvicorn did not start: {(tmp_path / 'app.log').read_text()}")
            time.sleep(0.05)
        sock.chmod(0o666)
        port = proxy_tools.free_port()
        argv = proxy_tools.nginx_to(tmp_path, port, f"http://unix:{sock}:", pki)
        with proxy_tools.run_proxy(argv, port, tmp_path):
            yield f"https://localhost:{port}/"
    finally:
        app.terminate()
        app.wait(10)
        log.close()


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("cert", "headers", "status", "expected"),
    [
        pytest.param("client_chain", (), 200, {"common_name": "alice"}, id="client certificate"),
        pytest.param(None, (), 401, {"code": "certificate_missing"}, id="no certificate"),
        pytest.param("wrong_cert", (), 401, {"code": "untrusted_issuer"}, id="wrong CA"),
        pytest.param(
            None,
            ("X-SSL-Client-Cert: forged",),
            401,
            {"code": "certificate_missing"},
            id="forged header without a certificate",
        ),
    ],
)
def test_nginx_to_uvicorn_over_a_unix_socket(
    nginx_to_unix_socket: str,
    client: Callable[..., Any],
    cert: str | None,
    headers: tuple[str, ...],
    status: int,
    expected: dict[str, str],
) -> None:
    reply = client(nginx_to_unix_socket, cert=cert, headers=headers)
    assert reply.status == status, reply.body
    assert expected.items() <= reply.body.items()
