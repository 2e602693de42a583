"""client.js's ``client.presence(channel)``, in Chromium on the bare test page.

The harness server (tests/browser/pages) has no presence, so ``/presence/...``
is an ordinary channel there: the page publishes the members lists, joins and
leaves itself (fake deliveries) to drive each case exactly. The chat tests
(test_chat_presence.py) run it against a server with presence.
"""

from __future__ import annotations

from typing import Any

from ._support import Browsers, Server, Tab

#: ``subscribed(log, watch)`` resolves once the server acknowledged the
#: client's subscribe to ``watch`` (``log`` from the page's ``record(client)``):
#: a publish sent then comes back. ``within(thenable, what)``: the thenable's
#: value, or a rejection after 5 s.
HELPERS = """() => {
    window.subscribed = (log, watch) => until(() => log.received.some((m) =>
        m.channel === '/meta/subscribe' && m.subscription === watch && m.successful
    ), 5000, 'the subscribe to ' + watch);
    window.within = (thenable, what) => Promise.race([
        Promise.resolve(thenable),
        new Promise((_, reject) => setTimeout(() => reject(new Error('no ' + what)), 5000)),
    ]);
}"""


def open_page(browsers: Browsers, server: Server) -> Tab:
    tab = browsers.open(f"{server.origin}/", endpoint=server.endpoint)
    tab.page.evaluate(HELPERS)
    return tab


def test_members_events_and_the_thenable(browsers: Browsers, harness_server: Server) -> None:
    tab = open_page(browsers, harness_server)
    result = tab.page.evaluate(
        """async () => {
            const client = new Faye.Client('/faye');
            const watch = '/presence/api/room';
            const log = record(client);
            const seen = [];
            const presence = client.presence('/api/room');
            const shape = ['then', 'catch', 'members', 'on', 'off', 'bind', 'cancel', 'unsubscribe']
                .map((name) => typeof presence[name]);
            ['members', 'join', 'leave'].forEach((event) => {
                presence.on(event, (value) => seen.push([event, value]));
            });
            const alice = {user: 'alice', info: {name: 'Alice'}};
            await subscribed(log, watch);
            // A join before the list is in the list.
            await outcome(client.publish(watch, {join: {user: 'early'}}));
            await outcome(client.publish(watch, {members: [alice, {user: 'bob'}]}));
            const resolved = await within(presence, 'members list');
            await outcome(client.publish(watch, {join: {user: 'carol', info: 3}}));
            await outcome(client.publish(watch, {join: {user: 'carol', info: 4}}));  // known
            await outcome(client.publish(watch, {leave: {user: 'bob', info: null}}));
            await outcome(client.publish(watch, {leave: {user: 'nobody'}}));
            await outcome(client.publish(watch, 'no presence delivery'));
            await outcome(client.publish(watch, {join: {user: 'dave'}}));
            await until(() => seen.length === 4, 5000, 'the events');
            const members = presence.members();
            members.pop();  // a copy
            return {shape, resolved, seen, members: presence.members(), channel: presence.channel};
        }"""
    )
    alice = {"user": "alice", "info": {"name": "Alice"}}
    assert result == {
        "shape": ["function"] * 8,
        "resolved": [alice, {"user": "bob", "info": None}],
        "seen": [
            ["members", [alice, {"user": "bob", "info": None}]],
            ["join", {"user": "carol", "info": 3}],
            ["leave", {"user": "bob", "info": None}],
            ["join", {"user": "dave", "info": None}],
        ],
        "members": [alice, {"user": "carol", "info": 4}, {"user": "dave", "info": None}],
        "channel": "/api/room",
    }
    tab.check_no_errors()


def test_a_new_list_is_told_as_leaves_and_joins_then_itself(
    browsers: Browsers, harness_server: Server
) -> None:
    tab = open_page(browsers, harness_server)
    result = tab.page.evaluate(
        """async () => {
            const client = new Faye.Client('/faye');
            const watch = '/presence/api/again';
            const log = record(client);
            const seen = [];
            const presence = client.presence('/api/again');
            ['members', 'join', 'leave'].forEach((event) => {
                presence.on(event, (value) => seen.push([event, value]));
            });
            await subscribed(log, watch);
            await outcome(client.publish(watch, {members: [{user: 'a'}, {user: 'b'}]}));
            await within(presence, 'members list');
            // What a client gets after a new handshake: a new list.
            await outcome(client.publish(watch, {members: [{user: 'b'}, {user: 'c'}]}));
            await until(() => seen.length === 4, 5000, 'the events');
            return seen;
        }"""
    )
    assert result == [
        ["members", [{"user": "a", "info": None}, {"user": "b", "info": None}]],
        ["leave", {"user": "a", "info": None}],
        ["join", {"user": "c", "info": None}],
        ["members", [{"user": "b", "info": None}, {"user": "c", "info": None}]],
    ]


def test_presences_of_one_channel_share_its_list(
    browsers: Browsers, harness_server: Server
) -> None:
    """The server sends the list once per subscription of the session: a
    second presence (or one after a plain subscription) starts from it, and
    the server is told to unsubscribe once the last listener is gone."""
    tab = open_page(browsers, harness_server)
    result: dict[str, Any] = tab.page.evaluate(
        """async () => {
            const client = new Faye.Client('/faye');
            const log = record(client);
            const watch = '/presence/api/shared';
            const plain = [];
            const subscription = client.subscribe(watch, (data) => plain.push(data));
            await outcome(subscription);
            await outcome(client.publish(watch, {members: [{user: 'bob'}]}));
            await until(() => plain.length === 1, 5000, 'the list');
            const first = client.presence('/api/shared');
            const second = client.presence('/api/shared');
            const listed = [];
            second.on('members', (members) => listed.push(members));
            const lists = [await within(first, 'list'), await within(second, 'second list')];
            await until(() => listed.length === 1, 5000, "the second one's members event");
            subscription.cancel();
            first.cancel();
            first.cancel();  // twice is fine
            await outcome(client.publish(watch, {join: {user: 'carol'}}));
            await until(() => second.members().length === 2, 5000, 'the join');
            const unsubscribesBefore = log.count('/meta/unsubscribe', watch);
            second.cancel();
            await until(() => log.count('/meta/unsubscribe', watch) === 1, 5000, 'the unsubscribe');
            return {
                lists, listed, unsubscribesBefore,
                subscribes: log.count('/meta/subscribe', watch),
                first: first.members(), second: second.members(),
            };
        }"""
    )
    bob = {"user": "bob", "info": None}
    assert result == {
        "lists": [[bob], [bob]],
        "listed": [[bob]],
        "unsubscribesBefore": 0,
        "subscribes": 1,
        "first": [bob],  # cancelled before carol came: it heard no more
        "second": [bob, {"user": "carol", "info": None}],
    }


def test_no_list_no_presence_and_bad_arguments(browsers: Browsers, harness_server: Server) -> None:
    tab = open_page(browsers, harness_server)
    result = tab.page.evaluate(
        """async () => {
            const client = new Faye.Client('/faye');
            const errors = [];
            const bad = ['/api/*', '/api/**', '/meta/x', '/service/x', '/presence/x', 'x'];
            for (const channel of bad) {
                try { client.presence(channel); } catch (error) { errors.push(error.message); }
            }
            try {
                client.presence('/api/x', {wait: 1});
            } catch (error) {
                errors.push(error.message);
            }
            // This server has no presence: no list comes, and the thenable says so.
            const silent = await outcome(client.presence('/api/silent', {timeout: 0.3}));
            return {errors, silent};
        }"""
    )
    assert len(result["errors"]) == 7
    assert all("Cannot follow the presence of" in e for e in result["errors"][:6])
    assert result["errors"][6] == "Unrecognized option: wait"
    assert result["silent"] == {
        "ok": False,
        "error": {
            "code": None,
            "params": [],
            "message": "No members list for /api/silent: is presence on for it on the server?",
            "text": "null::No members list for /api/silent: is presence on for it on the server?",
        },
    }


def test_a_refused_subscription_rejects_with_the_servers_error(
    browsers: Browsers, chat_server: Server
) -> None:
    """The chat server keeps presence for /chat/** only."""
    tab = open_page(browsers, chat_server)
    result = tab.page.evaluate(
        """async () => {
            const client = new Faye.Client('/faye');
            const presence = client.presence('/elsewhere');
            const refused = await presence.then(() => ({ok: true}), (error) => ({
                ok: false, error: {code: error.code, params: error.params},
            }));
            return {refused, members: presence.members()};
        }"""
    )
    assert result["refused"]["ok"] is False
    assert result["refused"]["error"]["code"] == 403
    assert result["refused"]["error"]["params"] == ["/presence/elsewhere"]
    assert result["members"] == []
