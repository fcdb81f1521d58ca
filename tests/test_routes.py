"""Route rules: a method rule covers every spelling the framework serves, and no more."""

from __future__ import annotations

import re

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


# -- rules that could never apply are refused when written ----------------------------------
# A rule that no request can match leaves the paths it was written for under the default
# mode and policy, silently: a configuration mistake must not turn into a quiet fail-open.
@pytest.mark.parametrize(
    "methods",
    [
        pytest.param(["GET, POST"], id="a comma list in one string"),
        pytest.param(["GET POST"], id="a space-separated list in one string"),
        pytest.param(["get|post"], id="a bar-separated list"),
        pytest.param(["*"], id="a star for every method"),
        pytest.param(["GET", "PO ST"], id="one bad name among good ones"),
        pytest.param([""], id="empty name"),
        pytest.param([1], id="not a string"),
    ],
)
def test_method_names_that_no_request_has_are_refused(methods) -> None:
    with pytest.raises(ValueError, match="method"):
        Route("/admin/*", methods=methods, mode="mandatory")


@pytest.mark.parametrize(
    "pattern",
    [
        pytest.param("/caf%C3%A9", id="percent-encoded"),
        pytest.param("/admin%2F*", id="encoded slash in a prefix"),
        pytest.param("/search?q=*", id="a query"),
        pytest.param("/page#top", id="a fragment"),
        pytest.param("/a//b", id="empty segment"),
        pytest.param("/a/./b", id="dot segment"),
        pytest.param("/a/../admin/*", id="dot-dot segment"),
        pytest.param("/a/..", id="trailing dot-dot"),
        pytest.param("/admin;jsessionid=*", id="path parameter"),
        pytest.param("/a\\b", id="backslash"),
        pytest.param("/a\x00b", id="NUL"),
    ],
)
def test_patterns_that_no_routable_path_matches_are_refused(verifier, pattern) -> None:
    with pytest.raises(ValueError, match="can never match"):
        Route(pattern, mode="mandatory")
    with pytest.raises(ValueError, match="can never match"):
        Guard(verifier=verifier, exempt_paths=[pattern])


@pytest.mark.parametrize(
    ("pattern", "path"),
    [
        pytest.param("/static/.*", "/static/.well-known", id="a prefix ending inside a segment"),
        pytest.param("/.well-known/*", "/.well-known/x", id="a dotted name is no dot segment"),
        pytest.param("/café", "/café", id="UTF-8, as the router decodes it"),
        pytest.param("/a:b@c", "/a:b@c", id="sub-delimiters"),
    ],
)
def test_patterns_for_routable_paths_still_work(verifier, pattern, path) -> None:
    guard = Guard(verifier=verifier, mode=UNCHECKED, routes=[Route(pattern, mode="mandatory")])
    assert guard.resolve(path, "GET")[0] == "mandatory"


def test_config_file_method_string_is_refused(tmp_path, pki) -> None:
    from mtlsauth import load_config

    ca = tmp_path / "ca.pem"
    ca.write_bytes(pki.root.cert_pem.bytes())
    cfg = tmp_path / "mtls.toml"
    cfg.write_text(
        f'mode = "optional"\n[trust]\nfiles = ["{ca}"]\n'
        '[[routes]]\npath = "/admin/*"\nmethods = "GET, POST"\nmode = "mandatory"\n'
    )
    with pytest.raises(ValueError, match="list each method separately"):
        load_config(cfg)


# A rule that no request reaches because an exempt path or an earlier rule takes every
# request it covers: the requests it was written for get that other treatment, silently.
@pytest.mark.parametrize(
    ("routes", "exempt", "why"),
    [
        pytest.param(
            [Route("/api/*", mode="optional"), Route("/api/admin/*", mode="mandatory")],
            (),
            "the earlier route '/api/\\*'",
            id="a prefix before a longer one",
        ),
        pytest.param(
            [Route("/api*"), Route("/api", mode="mandatory")], (), "the earlier", id="prefix, exact"
        ),
        pytest.param([Route("/a"), Route("/a", mode="off")], (), "the earlier", id="twice"),
        pytest.param(
            [Route("/api/*", methods={"GET"}), Route("/api/x", methods={"HEAD"}, mode="off")],
            (),
            "the earlier",
            id="GET covers HEAD",
        ),
        pytest.param(
            [Route("/api/*"), Route("/api/x", methods={"POST"}, mode="mandatory")],
            (),
            "the earlier",
            id="all methods before some",
        ),
        pytest.param(
            [Route("/public/admin", mode="mandatory")],
            ["/public/*"],
            "the exempt path '/public/\\*'",
            id="under an exempt prefix",
        ),
        pytest.param(
            [Route("/status", mode="mandatory")], ["/status"], "the exempt", id="an exempt path"
        ),
    ],
)
def test_routes_that_no_request_reaches_are_refused(verifier, routes, exempt, why) -> None:
    with pytest.raises(ValueError, match=f"is never applied: {why}"):
        Guard(verifier=verifier, routes=routes, exempt_paths=exempt)


@pytest.mark.parametrize(
    ("routes", "exempt"),
    [
        pytest.param(
            [Route("/api/admin/*", mode="mandatory"), Route("/api/*", mode="optional")],
            (),
            id="the longer prefix first",
        ),
        pytest.param(
            [Route("/api/*", methods={"GET"}), Route("/api/x", mode="mandatory")],
            (),
            id="some methods before all",
        ),
        pytest.param(
            [Route("/api/*", methods={"GET"}), Route("/api/x", methods={"POST"})],
            (),
            id="other methods",
        ),
        pytest.param([Route("/api"), Route("/api*")], (), id="exact before its prefix"),
        pytest.param(
            [Route(re.compile("^/api")), Route("/api/x")], (), id="regexes are not compared"
        ),
        pytest.param([Route("/api/*")], ["/api/health"], id="an exempt path inside a route"),
    ],
)
def test_routes_that_requests_still_reach_are_accepted(verifier, routes, exempt) -> None:
    Guard(verifier=verifier, routes=routes, exempt_paths=exempt)


def test_config_file_route_behind_an_earlier_one_is_refused(tmp_path, pki) -> None:
    from mtlsauth import load_config

    ca = tmp_path / "ca.pem"
    ca.write_bytes(pki.root.cert_pem.bytes())
    cfg = tmp_path / "mtls.toml"
    cfg.write_text(
        f'mode = "optional"\nexempt_paths = ["/healthz"]\n[trust]\nfiles = ["{ca}"]\n'
        '[[routes]]\npath = "/api/*"\nmode = "optional"\n'
        '[[routes]]\npath = "/api/admin/*"\nmode = "mandatory"\n'
        '[routes.policy]\ncommon_names = ["admin"]\n'
    )
    with pytest.raises(ValueError, match=r"\[routes\.2\]: route '/api/admin/\*' is never applied"):
        load_config(cfg)
    cfg.write_text(
        f'exempt_paths = ["/public/*"]\n[trust]\nfiles = ["{ca}"]\n'
        '[[routes]]\npath = "/public/admin"\nmode = "mandatory"\n'
    )
    with pytest.raises(ValueError, match=r"\[routes\.1\]: .* the exempt path '/public/\*'"):
        load_config(cfg)


def test_a_route_policy_where_no_certificate_is_checked_is_refused(verifier) -> None:
    """Mode "off" checks no certificate: a policy given there would never apply, and the
    paths it was written for would admit anyone."""
    from mtlsauth import Policy

    admins = Policy(common_names=["admin"])
    with pytest.raises(ValueError, match="the policy would never apply"):
        Route("/admin/*", mode="off", policy=admins)
    with pytest.raises(ValueError, match="the middleware's mode"):
        Guard(verifier=verifier, mode="off", routes=[Route("/admin/*", policy=admins)])
    # a route that sets a checking mode of its own keeps its policy
    guard = Guard(
        verifier=verifier, mode="off", routes=[Route("/admin/*", mode="mandatory", policy=admins)]
    )
    assert guard.resolve("/admin/x", "GET")[0] == "mandatory"


@pytest.mark.parametrize(
    ("top", "route", "message"),
    [
        pytest.param('mode = "off"\n', "", "middleware's mode", id="the default mode"),
        pytest.param("", 'mode = "off"\n', "its mode", id="the route's mode"),
    ],
)
def test_config_file_route_policy_under_mode_off_is_refused(tmp_path, pki, top, route, message):
    from mtlsauth import load_config

    ca = tmp_path / "ca.pem"
    ca.write_bytes(pki.root.cert_pem.bytes())
    cfg = tmp_path / "mtls.toml"
    cfg.write_text(
        f'{top}[trust]\nfiles = ["{ca}"]\n[[routes]]\npath = "/admin/*"\n{route}'
        '[routes.policy]\ncommon_names = ["admin"]\n'
    )
    with pytest.raises(ValueError, match=rf"\[routes\.1\]\.policy: .*{message}"):
        load_config(cfg)


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


# -- a route's policy replaces the Verifier's allow-lists, never its deny-lists ---------------
def _wsgi_status(app, environ: dict[str, str], path: str) -> str:
    seen: list[str] = []
    env = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "REMOTE_ADDR": "127.0.0.1",
    }
    env |= {"SERVER_NAME": "localhost", "SERVER_PORT": "443", "SERVER_PROTOCOL": "HTTP/1.1"}
    b"".join(app(env | environ, lambda status, headers, exc=None: seen.append(status)))
    return seen[0]


def _denying(pki, **deny) -> Verifier:
    from mtlsauth import Policy

    return Verifier(trust_store=pki.root.trust_store(), policy=Policy(**deny))


def _deny_forms(pki) -> list[dict[str, list[object]]]:
    cert = pki.good.certificate
    return [
        {"deny_serials": [cert.serial_number]},
        {"deny_fingerprints": [pki.good.certificate.fingerprint(_sha256()).hex()]},
    ]


def _sha256():
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()


@pytest.mark.parametrize("which", [0, 1], ids=["deny_serials", "deny_fingerprints"])
@pytest.mark.parametrize(
    "route_policy",
    [
        {"common_names": ["ledger"]},
        {},  # Policy(): "any trusted certificate" on this route
    ],
    ids=["route allow-list", "empty route policy"],
)
def test_route_policy_keeps_the_verifier_deny_lists(pki, which, route_policy) -> None:
    from mtlsauth import Policy, PolicyDenied

    verifier = _denying(pki, **_deny_forms(pki)[which])
    chain = list(pki.good.chain_der)
    policy = Policy(**route_policy)
    for _ in range(2):  # a miss, then a cache hit
        with pytest.raises(PolicyDenied) as info:
            verifier.verify(chain, policy=policy)
        assert info.value.code == "certificate_denied"
    with pytest.raises(PolicyDenied):  # what-if (at=), uncached
        verifier.verify(chain, policy=policy, at=pki.good.certificate.not_valid_after_utc)


def test_route_policy_keeps_deny_lists_of_an_any_of_verifier_policy(pki) -> None:
    from mtlsauth import Policy, PolicyDenied

    serial = pki.good.certificate.serial_number
    verifier = Verifier(
        trust_store=pki.root.trust_store(),
        policy=Policy.any_of(
            Policy(common_names=["nobody"]), Policy(organizations=["x"], deny_serials=[serial])
        ),
    )
    with pytest.raises(PolicyDenied, match="deny-listed"):
        verifier.verify(list(pki.good.chain_der), policy=Policy(organizations=["payments"]))


def test_route_policy_still_replaces_the_verifier_allow_lists(pki) -> None:
    from mtlsauth import Policy, PolicyDenied

    verifier = Verifier(
        trust_store=pki.root.trust_store(),
        policy=Policy(common_names=["somebody-else"], deny_serials=[1]),
    )
    chain = list(pki.good.chain_der)
    assert verifier.verify(chain, policy=Policy(common_names=["ledger"])).common_name == "ledger"
    with pytest.raises(PolicyDenied) as info:
        verifier.verify(chain, policy=Policy(common_names=["billing"]))
    assert info.value.code == "common_name_not_allowed"
    with pytest.raises(PolicyDenied) as info:
        verifier.verify(chain)
    assert info.value.code == "common_name_not_allowed"


def test_middleware_route_keeps_the_verifier_deny_lists(pki) -> None:
    from mtlsauth import Policy
    from mtlsauth.adapters.wsgi import MTLSMiddleware

    verifier = _denying(pki, deny_serials=[pki.good.certificate.serial_number])

    def inner(environ, start_response):
        start_response("200 OK", [])
        return [b"ok"]

    app = MTLSMiddleware(
        inner,
        verifier=verifier,
        routes=[Route("/ledger/*", policy=Policy(common_names=["ledger"]))],
    )
    environ = pki.good.wsgi_environ()
    for _ in range(3):  # the uncached path, then the cached fast path
        assert _wsgi_status(app, environ, "/ledger/books").startswith("403")
        assert _wsgi_status(app, environ, "/other").startswith("403")
    allowed = pki.inter.issue_client_cert(common_name="ledger")
    assert _wsgi_status(app, allowed.wsgi_environ(), "/ledger/books").startswith("200")


def test_route_policy_with_deny_lists_pickles_and_names_both(pki) -> None:
    import pickle

    from mtlsauth import Policy, PolicyDenied

    verifier = _denying(pki, deny_serials=[pki.good.certificate.serial_number])
    route = Policy(common_names=["ledger"])
    combined = verifier._route_policy(route)
    assert verifier._route_policy(route) is combined  # remembered per route policy
    assert "deny_serials" in repr(combined)
    assert "common_names" in repr(combined)
    identity = Verifier(trust_store=pki.root.trust_store()).verify(list(pki.good.chain_der))
    clone = pickle.loads(pickle.dumps(combined))  # noqa: S301 - our own object
    for policy in (combined, clone):
        with pytest.raises(PolicyDenied):
            policy.check(identity)
    route.check(identity)  # the route's own policy is unchanged
