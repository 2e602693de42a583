"""JWT in Chromium with client.js: ``new Faye.Client(url, {token, tokenField})``.

The servers are ``bayeux serve --config FILE`` subprocesses serving the test
page (tests/browser/pages/jwt.html, with jwt.js's helper), one with an HS256
secret and one with an RS256 public key, with two channel rules: only the
user ``alice`` may subscribe to ``/alice/**``, and a channel token opens a
``/secret/**`` channel (tests/_support/tokens.py's ``jwt_config``, as for
the npm faye client; the refused tokens are its table too). Handshakes
without a token are allowed (anonymous), so the server fixture can tell it
is up; a token that is there but bad is refused.

The page sees a refusal as the handshake reply's ``401::...`` (a recording
extension, harness.js's ``record``); client.js then retries. The expiry case
waits for a real 3-second token to run out: the server ends the session with
``reconnect: handshake``, the token function is called again (its answer a
Promise this time), and the page goes on receiving.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import jwt
import pytest

from tests._support.tokens import (
    BAD_CONNECTION_TOKENS,
    bad_connection_token,
    channel_token,
    claims,
    connection_token,
    jwt_config,
    rsa_key,
)

from ._support import PAGES, Browsers, Server, Tab, running, start_server

FORBIDDEN = "403:{channel}:Forbidden"


def _serve(
    tmp_path_factory: pytest.TempPathFactory, algorithm: Literal["hs", "rs"]
) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp(f"jwt-{algorithm}")
    config = jwt_config(folder, algorithm)
    # Connects held 5 s: a page that switches transport sends its next
    # connect once the held one returns (see conftest's harness_server).
    args = ["--config", str(config), "--static", str(PAGES), "--timeout", "5"]
    with running(start_server(folder, [*args, "--log-level", "debug"])) as server:
        yield server


@pytest.fixture(scope="module")
def hs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _serve(tmp_path_factory, "hs")


@pytest.fixture(scope="module")
def rs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _serve(tmp_path_factory, "rs")


def page(browsers: Browsers, server: Server) -> Tab:
    tab = browsers.open(f"{server.origin}/jwt.html", endpoint=server.endpoint)
    assert tab.page.evaluate("Faye.implementation") == "bayeux-trio"
    return tab


# -------------------------------------------------------------- good tokens


@pytest.mark.parametrize("style", ["a string", "a Promise"])
def test_a_good_token_names_the_session(browsers: Browsers, hs_server: Server, style: str) -> None:
    token = connection_token("alice")
    tab = page(browsers, hs_server)
    result = tab.page.evaluate(
        """([token, promise]) => subscribeAndReceive(
            {token: () => (promise ? Promise.resolve(token) : token)}, '/alice/inbox'
        )""",
        [token, style == "a Promise"],
    )
    # Only alice may subscribe to /alice/**: the session's user is the token's sub.
    assert result == {
        "subscribed": {"ok": True},
        "got": [{"n": 1}],
        "ext": {"auth": {"token": token}},
    }


def test_another_users_token_is_refused_alices_channel(
    browsers: Browsers, hs_server: Server
) -> None:
    tab = page(browsers, hs_server)
    result = tab.page.evaluate(
        "(token) => subscribeAndReceive({token: () => token}, '/alice/inbox')",
        connection_token("bob"),
    )
    assert result["subscribed"]["ok"] is False
    assert result["subscribed"]["error"]["text"] == FORBIDDEN.format(channel="/alice/inbox")


def test_an_rs256_token_is_accepted_by_the_public_key(
    browsers: Browsers, rs_server: Server
) -> None:
    token = jwt.encode(claims("alice"), rsa_key(), algorithm="RS256")
    tab = page(browsers, rs_server)
    result = tab.page.evaluate(
        "(token) => subscribeAndReceive({token: () => token}, '/alice/inbox')",
        token,
    )
    assert result["subscribed"] == {"ok": True}


def test_the_token_goes_at_token_field_beside_other_ext_keys(
    browsers: Browsers, hs_server: Server
) -> None:
    tab = page(browsers, hs_server)
    result = tab.page.evaluate(
        """async () => {
            const client = new Faye.Client('/faye', {
                token: () => 'abc', tokenField: 'credentials.jwt', ack: true
            });
            const log = record(client);
            client.connect();
            await until(() => log.sent.length > 0, 10000, 'the handshake');
            client.disconnect();
            return log.sent[0].ext;
        }"""
    )
    assert result == {"ack": True, "credentials": {"jwt": "abc"}}


def test_the_token_options_are_checked(browsers: Browsers, hs_server: Server) -> None:
    tab = page(browsers, hs_server)
    result = tab.page.evaluate(
        """() => {
            const refusal = (options) => {
                try { new Faye.Client('/faye', options); return null; }
                catch (error) { return error.message; }
            };
            return [
                refusal({token: 'not a function'}),
                refusal({token: () => 't', tokenField: 'auth..token'}),
                refusal({tokenField: ''}),
                refusal({token: () => 't', tokenField: 'jwt'}),
            ];
        }"""
    )
    assert result[0] == "token must be a function returning the token (or a Promise of it)"
    assert result[1].startswith("tokenField must be a dotted path in ext")
    assert result[2].startswith("tokenField must be a dotted path in ext")
    assert result[3] is None


# --------------------------------------------------------------- bad tokens


@pytest.mark.parametrize(("kind", "error"), BAD_CONNECTION_TOKENS.items())
def test_a_bad_token_is_refused_at_the_handshake(
    browsers: Browsers, request: pytest.FixtureRequest, kind: str, error: str
) -> None:
    algorithm, token = bad_connection_token(kind)
    server: Server = request.getfixturevalue(f"{algorithm}_server")
    tab = page(browsers, server)
    result = tab.page.evaluate(
        """async (token) => {
            let calls = 0;
            const counted = () => { calls += 1; return token; };
            const client = new Faye.Client('/faye', {retry: 0.2, token: counted});
            const log = record(client);
            const replies = () => log.received.filter((m) => m.channel === '/meta/handshake');
            client.connect();
            // Two refusals: the client tries again, calling the function again.
            await until(() => replies().length >= 2, 10000, 'two handshake replies');
            client.disconnect();
            const reply = replies()[0];
            return {successful: reply.successful, error: reply.error, advice: reply.advice,
                    clientId: reply.clientId || null, state: client._state, calls};
        }""",
        token,
    )
    assert result["successful"] is False
    assert result["error"] == error
    assert result["clientId"] is None
    assert result["advice"]["reconnect"] == "handshake"
    assert result["calls"] >= 2


@pytest.mark.parametrize("failure", ["throws", "rejects", "gives a number"])
def test_a_failing_token_function_sends_the_handshake_without_a_token(
    browsers: Browsers, hs_server: Server, failure: str
) -> None:
    tab = page(browsers, hs_server)
    result = tab.page.evaluate(
        """async (failure) => {
            const warnings = [];
            Faye.logger = {warn: (line) => warnings.push(line)};
            const token = {
                'throws': () => { throw new Error('token service down'); },
                'rejects': () => Promise.reject(new Error('token service down')),
                'gives a number': () => 42,
            }[failure];
            const result = await subscribeAndReceive({token}, '/alice/inbox');
            Faye.logger = null;
            return Object.assign(result, {warnings});
        }""",
        failure,
    )
    # Anonymous (this server allows it), so alice's channel is refused.
    assert result["ext"] is None
    assert result["subscribed"]["error"]["text"] == FORBIDDEN.format(channel="/alice/inbox")
    (warning,) = result["warnings"]
    assert "handshaking without a token" in warning
    if failure != "gives a number":
        assert "token service down" in warning


# ----------------------------------------------------------- channel tokens


@pytest.mark.parametrize(("ticket_for", "ok"), [("/secret/mine", True), ("/secret/theirs", False)])
def test_a_channel_token_opens_its_channel_only(
    browsers: Browsers, hs_server: Server, ticket_for: str, ok: bool
) -> None:
    tab = page(browsers, hs_server)
    result = tab.page.evaluate(
        """async ([connection, ticket]) => {
            const client = new Faye.Client('/faye', {retry: 1, token: () => connection});
            // As an application would: the channel token on the subscribe.
            client.addExtension({outgoing: (message, callback) => {
                if (message.channel === '/meta/subscribe') {
                    message.ext = Object.assign({}, message.ext, {auth: {channelToken: ticket}});
                }
                callback(message);
            }});
            const got = [];
            const subscription = client.subscribe('/secret/mine', (data) => got.push(data));
            const subscribed = await outcome(subscription);
            if (subscribed.ok) {
                await outcome(client.publish('/secret/mine', 'psst'));
                await until(() => got.length === 1, 10000, 'the delivery');
            }
            await client.disconnect();
            return {subscribed, got};
        }""",
        [connection_token("carol"), channel_token(ticket_for)],
    )
    if ok:
        assert result == {"subscribed": {"ok": True}, "got": ["psst"]}
    else:
        assert result["subscribed"]["ok"] is False
        assert result["subscribed"]["error"]["text"] == FORBIDDEN.format(channel="/secret/mine")


# ------------------------------------------------------------------ expiry


@pytest.mark.parametrize("transport", ["websocket", "long-polling"])
def test_a_session_whose_token_expires_handshakes_again_with_a_fresh_one(
    browsers: Browsers, hs_server: Server, transport: str
) -> None:
    short, fresh = connection_token("alice", lifetime=3), connection_token("alice")
    tab = page(browsers, hs_server)
    result: dict[str, Any] = tab.page.evaluate(
        """async ([short, fresh, longPolling]) => {
            let calls = 0;
            // The first token as a string, the next ones as a Promise (a refresh).
            const token = () => {
                calls += 1;
                return calls === 1 ? short : Promise.resolve(fresh);
            };
            const client = new Faye.Client('/faye', {retry: 1, token});
            if (longPolling) { client.disable('websocket'); client.disable('eventsource'); }
            const log = record(client);
            const got = [];
            const subscription = client.subscribe('/alice/inbox', (data) => got.push(data));
            const subscribed = await outcome(subscription);
            await outcome(client.publish('/alice/inbox', {session: 1}));
            await until(() => got.length === 1, 10000, 'the first delivery');
            // (session:up came once already, after the first handshake)
            let ups = 0;
            client.bind('session:up', () => { ups += 1; });
            // The server ends the session at expiry; the client handshakes
            // again and subscribes again (as alice), then says session:up.
            await until(() => ups >= 1, 15000, 'session:up after a new handshake');
            const published = await outcome(client.publish('/alice/inbox', {session: 2}));
            await until(() => got.length === 2, 10000, 'a delivery in the new session');
            await client.disconnect();
            const handshakes = log.received.filter((m) => m.channel === '/meta/handshake');
            return {
                subscribed, published, got, calls,
                sessions: handshakes.filter((m) => m.successful).map((m) => m.clientId),
                tokens: log.sent.filter((m) => m.channel === '/meta/handshake')
                    .map((m) => m.ext.auth.token),
                connectionTypes: log.sent.filter((m) => m.channel === '/meta/connect')
                    .map((m) => m.connectionType),
            };
        }""",
        [short, fresh, transport == "long-polling"],
    )
    assert result["subscribed"] == {"ok": True}
    assert result["published"] == {"ok": True}
    assert result["got"] == [{"session": 1}, {"session": 2}]
    assert result["calls"] >= 2
    sessions = result["sessions"]
    assert len(sessions) == 2
    assert sessions[0] != sessions[1]
    assert result["tokens"][0] == short
    assert set(result["tokens"][1:]) == {fresh}
    assert result["connectionTypes"][-1] == transport
