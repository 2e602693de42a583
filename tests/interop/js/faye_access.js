// npm faye 1.4.3 clients against channel rules and backend hooks, driven by
// tests/interop/test_faye_access.py.
//
// Usage: node faye_access.js <endpoint URL> <json options>
//   options: {"transport": "websocket" | "long-polling",
//             "tokens": {"alice": "...", "bob": "...", "carol": "..."},
//             "conversation": "/talk/alice/bob"   (alice and bob's),
//             "closed": "/news/closed"            (the backend refuses it),
//             "serverOnly": "/news/today"         (publish = "server")}
// Each client puts its user's registry token in every message's
// ext.authToken, as an application's extension would, and settles on the
// transport before it does anything else. Then:
//   bob subscribes to the conversation and to the server-only channel;
//   carol subscribes to the conversation (the rule refuses her);
//   alice subscribes to the closed channel (the backend refuses her);
//   alice publishes to the server-only channel (the rule refuses her), then
//   to the conversation (the backend rewrites it), and bob receives that.
// One JSON line per observation; the last is {"event": "done"} (exit 0) or
// {"event": "error"} (exit 1).
'use strict';

const faye = require('faye');

const [endpoint, rawOptions] = process.argv.slice(2);
const options = JSON.parse(rawOptions);

const { emit, fail } = require('./report');

function waitFor(predicate, what) {
  return new Promise(function (resolve, reject) {
    const started = Date.now();
    (function poll() {
      if (predicate()) return resolve();
      if (Date.now() - started > 10000) return reject(new Error('timed out waiting for ' + what));
      setTimeout(poll, 20);
    })();
  });
}

// A client for `user` on the chosen transport, connected; in an array,
// because a faye.Client is a thenable that resolving a Promise would wait on.
async function connected(user) {
  // retry: 1 so that a lost request is sent again after 1 s, not 5.
  const client = new faye.Client(endpoint, { timeout: 25, retry: 1 });
  if (options.transport === 'long-polling') client.disable('websocket');
  client.addExtension({
    outgoing: function (message, callback) {
      message.ext = Object.assign({}, message.ext, { authToken: options.tokens[user] });
      callback(message);
    },
  });
  client.connect();
  // Faye picks the WebSocket after the handshake: wait for it, so that the
  // messages below travel on the transport under test.
  await waitFor(function () {
    return client._dispatcher.connectionType === options.transport;
  }, user + "'s " + options.transport);
  return [client];
}

// How a Faye promise ended: {ok: true}, or the Bayeux error it rejected with.
function outcome(promise) {
  return promise.then(
    function () { return { ok: true }; },
    function (error) {
      return { ok: false, error: String(error), code: error.code, message: error.message };
    },
  );
}

async function scenario() {
  const [alice] = await connected('alice');
  const [bob] = await connected('bob');
  const [carol] = await connected('carol');
  const got = [];

  async function subscribe(user, client, channel) {
    const subscription = client.subscribe(channel, function (data) {
      got.push({ user: user, channel: channel, data: data });
      emit('message', { user: user, channel: channel, data: data });
    });
    emit('subscribe', Object.assign({ user: user, channel: channel }, await outcome(subscription)));
  }

  async function publish(user, client, channel, data) {
    const publication = client.publish(channel, data);
    emit('publish', Object.assign({ user: user, channel: channel }, await outcome(publication)));
  }

  await subscribe('bob', bob, options.conversation);
  await subscribe('bob', bob, options.serverOnly);
  await subscribe('carol', carol, options.conversation);
  await subscribe('alice', alice, options.closed);
  await publish('alice', alice, options.serverOnly, { text: 'not from the server' });
  await publish('alice', alice, options.conversation, { text: 'hello bob', from: 'mallory' });
  // One server delivers a client's messages in order: once this has come,
  // anything the server-only publish had let through would have come too.
  await waitFor(function () {
    return got.some(function (m) {
      return m.user === 'bob' && m.channel === options.conversation;
    });
  }, "bob's delivery");
  emit('transport', {
    alice: alice._dispatcher.connectionType,
    bob: bob._dispatcher.connectionType,
    carol: carol._dispatcher.connectionType,
  });
  await Promise.all([alice.disconnect(), bob.disconnect(), carol.disconnect()]);
}

setTimeout(function () { fail('timed out'); }, 25000);
scenario().then(function () {
  emit('done');
  process.exit(0);
}, fail);
