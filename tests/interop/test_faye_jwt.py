"""JWT with the npm faye 1.4.3 Node.js client, against ``bayeux serve --config``.

Faye knows nothing of tokens: as an application would, the script gives its
client an extension that puts a connection token in each handshake's
``ext.auth.token`` (the next of a list, so each re-handshake can bring a
fresh one) and a channel token in the subscribe's ``ext.auth.channelToken``.
It reports the handshake replies it sees, so a refusal's ``401::...`` is what
the client got; Faye then retries, as after any refused handshake.

The servers are ``python -m bayeux_trio serve --config FILE`` subprocesses
(one HS256 with the secret in a file, one RS256 with a public key), with two
channel rules: only the user ``alice`` may subscribe to ``/alice/**``, and a
channel token opens a ``/secret/**`` channel (tests/_support/tokens.py's
``jwt_config``, as for client.js in Chromium; the refused tokens are its
table too). The expiry case waits for a real 3-second token to run out.

The script is written to a temporary folder from :data:`SCRIPT` (the JS
source is kept here, beside the test that reads its output).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
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

from ._support import ServerProcess, of, run_node, running, start_our_server

TRANSPORTS = pytest.mark.parametrize("transport", ["websocket", "long-polling"])
FORBIDDEN = "403:{channel}:Forbidden"

SCRIPT = r"""
// An npm faye client with JWT: tests/interop/test_faye_jwt.py writes and runs it.
//
// Usage: node faye_jwt.js <endpoint URL> <json options>
//   options: {"transport": "websocket" | "long-polling",
//             "tokens": [...]  the connection token of the 1st, 2nd, ... handshake
//                              (the last one for every later handshake),
//             "channel": "/a/b", "channelToken": "..." (on its subscribe),
//             "expect": "refused" | "subscribed" | "rehandshake",
//             "lifetime": ms before giving up}
//   refused: stop at the first refused handshake.
//   subscribed: subscribe to `channel` (or report the refusal), publish to it,
//     receive it.
//   rehandshake: as subscribed, then keep publishing until a message published
//     after a second successful handshake comes back.
// One JSON line per observation; the last is {"event": "done"} (exit 0) or
// {"event": "error"} (exit 1).
'use strict';

const faye = require('faye');

const [endpoint, rawOptions] = process.argv.slice(2);
const options = JSON.parse(rawOptions);

function emit(event, fields) {
  process.stdout.write(JSON.stringify(Object.assign({ event: event }, fields || {})) + '\n');
}

function done() {
  emit('done');
  process.exit(0);
}

function fail(error) {
  emit('error', { message: String((error && error.stack) || (error && error.message) || error) });
  process.exit(1);
}

function waitFor(predicate, what) {
  return new Promise(function (resolve, reject) {
    const started = Date.now();
    (function poll() {
      if (predicate()) return resolve();
      if (Date.now() - started > 15000) return reject(new Error('timed out waiting for ' + what));
      setTimeout(poll, 20);
    })();
  });
}

// retry: 1 so that a refused handshake is tried again after 1 s, not 5.
const client = new faye.Client(endpoint, { timeout: 25, retry: 1 });
if (options.transport === 'long-polling') client.disable('websocket');

let handshakes = 0;
const sessions = [];
client.addExtension({
  outgoing: function (message, callback) {
    if (message.channel === '/meta/handshake') {
      const tokens = options.tokens;
      const index = Math.min(handshakes, tokens.length - 1);
      handshakes += 1;
      emit('handshake_sent', { token: index });
      message.ext = Object.assign({}, message.ext, { auth: { token: tokens[index] } });
    } else if (message.channel === '/meta/subscribe' && options.channelToken) {
      const auth = { channelToken: options.channelToken };
      message.ext = Object.assign({}, message.ext, { auth: auth });
    }
    callback(message);
  },
  incoming: function (message, callback) {
    if (message.channel === '/meta/handshake') {
      emit('handshake', {
        successful: !!message.successful,
        error: message.error || null,
        advice: message.advice || null,
        clientId: message.clientId || null,
      });
      if (message.successful) sessions.push(message.clientId);
      else if (options.expect === 'refused') done();
    }
    callback(message);
  },
});

async function subscribed() {
  const got = [];
  const subscription = client.subscribe(options.channel, function (data) {
    got.push(data);
    emit('message', { data: data });
  });
  try {
    await subscription;
  } catch (error) {
    emit('subscribe_failed', { error: String(error), code: error.code });
    return;
  }
  emit('subscribed', { clientId: client._dispatcher.clientId });
  await client.publish(options.channel, { n: 0, session: 1 });
  await waitFor(function () { return got.length >= 1; }, 'the first delivery');
  if (options.expect !== 'rehandshake') return;

  await waitFor(function () { return sessions.length >= 2; }, 'a second session');
  // Published until one comes back: the client subscribes again after its
  // new handshake, and what is published before that reaches nobody.
  for (let n = 1; n <= 50; n += 1) {
    try {
      await client.publish(options.channel, { n: n, session: 2 });
    } catch (error) {
      emit('publish_failed', { error: String(error) });
    }
    const seen = Date.now();
    while (Date.now() - seen < 300) {
      if (got.some(function (data) { return data.session === 2; })) return;
      await new Promise(function (resolve) { setTimeout(resolve, 20); });
    }
  }
  throw new Error('no message came back after the second handshake');
}

setTimeout(function () { fail('timed out'); }, options.lifetime || 20000);
if (options.expect === 'refused') {
  client.connect();
} else {
  subscribed().then(function () { return client.disconnect(); }).then(done, fail);
}
"""


# ------------------------------------------------------------------ servers


def _serve(
    tmp_path_factory: pytest.TempPathFactory, algorithm: Literal["hs", "rs"]
) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp(f"jwt-{algorithm}")
    args = ["--config", str(jwt_config(folder, algorithm)), "--log-level", "debug"]
    with running(start_our_server(folder / "server.log", args)) as server:
        yield server


@pytest.fixture(scope="module")
def hs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """HS256, the secret in a file."""
    yield from _serve(tmp_path_factory, "hs")


@pytest.fixture(scope="module")
def rs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """RS256, the public key in a file."""
    yield from _serve(tmp_path_factory, "rs")


#: runs the script against a server with the given options; the events it printed
Faye = Callable[..., list[dict[str, Any]]]


@pytest.fixture(scope="module")
def faye(node_modules: Path, tmp_path_factory: pytest.TempPathFactory) -> Faye:
    """The script's runner: subscribe to alice's inbox unless told otherwise."""
    script = tmp_path_factory.mktemp("faye-jwt") / "faye_jwt.js"
    script.write_text(SCRIPT)

    def run(server: ServerProcess, **options: Any) -> list[dict[str, Any]]:
        options = {"channel": "/alice/inbox", "expect": "subscribed", **options}
        # run_node runs js/<script>; an absolute path replaces js/ (pathlib's join).
        return run_node(node_modules, str(script), [server.url, json.dumps(options)], server=server)

    return run


# -------------------------------------------------------------------- tests


@TRANSPORTS
def test_a_good_token_names_the_session(
    faye: Faye, hs_server: ServerProcess, transport: str
) -> None:
    events = faye(hs_server, transport=transport, tokens=[connection_token("alice")])
    assert [e["successful"] for e in of(events, "handshake")] == [True]
    # Only alice may subscribe to /alice/**: the session's user is the token's sub.
    assert of(events, "subscribed")
    assert [e["data"] for e in of(events, "message")] == [{"n": 0, "session": 1}]


def test_another_users_token_is_refused_alices_channel(
    faye: Faye, hs_server: ServerProcess
) -> None:
    events = faye(hs_server, tokens=[connection_token("bob")])
    (failed,) = of(events, "subscribe_failed")
    assert failed == {
        "event": "subscribe_failed",
        "error": FORBIDDEN.format(channel="/alice/inbox"),
        "code": 403,
    }


@pytest.mark.parametrize(("kind", "error"), BAD_CONNECTION_TOKENS.items())
def test_a_bad_token_is_refused_at_the_handshake(
    faye: Faye, request: pytest.FixtureRequest, kind: str, error: str
) -> None:
    algorithm, token = bad_connection_token(kind)
    server: ServerProcess = request.getfixturevalue(f"{algorithm}_server")
    events = faye(server, tokens=[token], expect="refused")
    (refused,) = of(events, "handshake")
    assert refused["successful"] is False
    assert refused["error"] == error
    assert refused["clientId"] is None
    # Not for good: the client may come back with a better token.
    assert refused["advice"]["reconnect"] == "handshake"


def test_an_rs256_token_is_accepted_by_the_public_key(faye: Faye, rs_server: ServerProcess) -> None:
    token = jwt.encode(claims("alice"), rsa_key(), algorithm="RS256")
    events = faye(rs_server, tokens=[token])
    assert of(events, "subscribed")


@pytest.mark.parametrize(("ticket_for", "ok"), [("/secret/mine", True), ("/secret/theirs", False)])
def test_a_channel_token_opens_its_channel_only(
    faye: Faye, hs_server: ServerProcess, ticket_for: str, ok: bool
) -> None:
    events = faye(
        hs_server,
        tokens=[connection_token("carol")],
        channel="/secret/mine",
        channelToken=channel_token(ticket_for),
    )
    if ok:
        assert of(events, "subscribed")
        assert [e["data"] for e in of(events, "message")] == [{"n": 0, "session": 1}]
    else:
        (failed,) = of(events, "subscribe_failed")
        assert failed["error"] == FORBIDDEN.format(channel="/secret/mine")


@TRANSPORTS
def test_a_session_whose_token_expires_handshakes_again_with_a_fresh_one(
    faye: Faye, hs_server: ServerProcess, transport: str
) -> None:
    events = faye(
        hs_server,
        transport=transport,
        tokens=[connection_token("alice", lifetime=3), connection_token("alice")],
        expect="rehandshake",
        lifetime=25000,
    )
    sessions = [e["clientId"] for e in of(events, "handshake", successful=True)]
    assert len(sessions) >= 2
    assert len(set(sessions)) == len(sessions)
    # Every handshake after the first brought the fresh token.
    assert [e["token"] for e in of(events, "handshake_sent")][:2] == [0, 1]
    # ... and the client, subscribed again as alice, got what was published then.
    assert any(e["data"]["session"] == 2 for e in of(events, "message"))
