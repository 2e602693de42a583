// One npm faye 1.4.3 Node.js client (one "tab" of a user), driven line by line
// through stdin by tests/interop/test_faye_presence.py.
//
// Usage: node faye_presence.js <endpoint URL> <json options>
//   options: {"transport": "websocket" | "long-polling", "user": "alice",
//             "name": "Alice" (optional), "lifetime": <ms, default 90000>}
//
// A client extension adds {"user", "name"} to the ext of the client's
// /meta/handshake, as an application would add its auth token; the server's
// extension (tests/interop/presence_ext.py) makes it the session's user.
//
// Commands, one JSON object a line on stdin:
//   {"cmd": "subscribe", "channel": "/chat/room"}
//   {"cmd": "unsubscribe", "channel": "/chat/room"}   (cancels the subscription)
//   {"cmd": "disconnect"}                            (client.disconnect())
// Events, one JSON object a line on stdout:
//   {"event": "handshaken", "clientId": ...}
//   {"event": "subscribed", "channel": ..., "clientId": ..., "connectionType": ...}
//   {"event": "refused", "channel": ..., "error": ...}
//   {"event": "reply", "channel": "/meta/...", "successful": ..., "subscription": ...}
//   {"event": "message", "channel": ..., "data": ...}   (a delivery on a subscribed channel)
// It ends when stdin closes ({"event": "done"}, exit 0) or when `lifetime`
// passes ({"event": "error"}, exit 1). The tests kill it to close its
// connection without a /meta/disconnect, as a closed browser tab does.
'use strict';

const faye = require('faye');
const readline = require('readline');

const [endpoint, rawOptions] = process.argv.slice(2);
const options = JSON.parse(rawOptions || '{}');

const { emit, fail } = require('./report');

const client = new faye.Client(endpoint, { timeout: 25, retry: 1 });
if (options.transport === 'long-polling') client.disable('websocket');

client.addExtension({
  outgoing: function (message, callback) {
    if (message.channel === '/meta/handshake' && options.user) {
      const ext = Object.assign({}, message.ext || {}, { user: options.user });
      if (options.name) ext.name = options.name;
      message.ext = ext;
    }
    callback(message);
  },
  incoming: function (message, callback) {
    if (message.channel === '/meta/handshake' && message.successful) {
      emit('handshaken', { clientId: message.clientId });
    }
    if (message.channel && message.channel.indexOf('/meta/') === 0 &&
        message.channel !== '/meta/connect') {
      emit('reply', {
        channel: message.channel,
        successful: !!message.successful,
        subscription: message.subscription || null,
        error: message.error || null,
      });
    }
    callback(message);
  },
});

const subscriptions = {};

function run(command) {
  const channel = command.channel;
  if (command.cmd === 'subscribe') {
    const subscription = client.subscribe(channel, function (data) {
      emit('message', { channel: channel, data: data });
    });
    subscriptions[channel] = subscription;
    subscription.then(function () {
      emit('subscribed', {
        channel: channel,
        clientId: client._dispatcher.clientId,
        connectionType: client._dispatcher.connectionType,
      });
    }, function (error) {
      emit('refused', { channel: channel, error: String((error && error.message) || error) });
    });
  } else if (command.cmd === 'unsubscribe') {
    subscriptions[channel].cancel();
    delete subscriptions[channel];
  } else if (command.cmd === 'disconnect') {
    client.disconnect();
  } else {
    fail('unknown command ' + JSON.stringify(command));
  }
}

setTimeout(function () { fail('timed out'); }, options.lifetime || 90000);
const lines = readline.createInterface({ input: process.stdin });
lines.on('line', function (line) {
  if (line.trim()) {
    try { run(JSON.parse(line)); } catch (error) { fail(error); }
  }
});
lines.on('close', function () {
  emit('done');
  process.exit(0);
});
