"""Route rules: a method rule covers every spelling the framework serves, and no more."""

from __future__ import annotations

import pytest

from mtlsauth import Verifier
from mtlsauth._guard import Guard, Route

UNCHECKED = "off"


@pytest.fixture(scope="module")
def verifier(pki) -> Verifier:
    return Verifier(trust_store=pki.root.trust_store())


# -- routes: a method rule must cover every spelling the framework serves -----------------
METHOD_SPELLINGS = [
    pytest.param("GET", {"GET"}, id="GET rule, GET"),
    pytest.param("HEAD", {"GET"}, id="GET rule, HEAD runs the GET handler"),
    pytest.param("head", {"GET"}, id="GET rule, lower-case head"),
    pytest.param("post", {"POST"}, id="POST rule, lower-case post (WSGI upper-cases it)"),
    pytest.param("Delete", {"DELETE"}, id="DELETE rule, mixed case"),
]


@pytest.mark.parametrize(("method", "methods"), METHOD_SPELLINGS)
def test_method_rule_covers_what_the_framework_serves(verifier, method, methods) -> None:
    guard = Guard(
        verifier=verifier,
        mode=UNCHECKED,
        routes=[Route("/admin/*", methods=methods, mode="mandatory")],
    )
    mode, route, _ = guard.resolve("/admin/users", method)
    assert mode == "mandatory"
    assert route is not None


@pytest.mark.parametrize(
    ("method", "methods"),
    [
        pytest.param("POST", {"GET"}, id="GET rule does not cover POST"),
        pytest.param("GET", {"HEAD"}, id="HEAD rule does not cover GET"),
        pytest.param("OPTIONS", {"GET"}, id="GET rule does not cover OPTIONS"),
    ],
)
def test_method_rule_does_not_widen(verifier, method, methods) -> None:
    guard = Guard(
        verifier=verifier, mode=UNCHECKED, routes=[Route("/x", methods=methods, mode="mandatory")]
    )
    assert guard.resolve("/x", method)[0] == UNCHECKED


def test_wsgi_lower_case_method_cannot_skip_a_mandatory_route(verifier) -> None:
    from mtlsauth.adapters.wsgi import MTLSMiddleware

    reached: list[str] = []

    def app(environ, start_response):
        reached.append(environ["REQUEST_METHOD"].upper())  # what Flask and Django serve
        start_response("200 OK", [("content-type", "text/plain")])
        return [b"admin"]

    mw = MTLSMiddleware(
        app,
        verifier=verifier,
        mode="off",
        routes=[Route("/admin/*", methods={"POST"}, mode="mandatory")],
    )
    statuses: list[str] = []
    environ = {"REQUEST_METHOD": "post", "PATH_INFO": "/admin/rotate", "REMOTE_ADDR": "1.2.3.4"}
    mw(environ, lambda status, headers, exc_info=None: statuses.append(status))
    assert statuses[0].startswith("401")
    assert reached == []
