// The npm faye 1.4.3 Node.js client as a long-running subscriber, driven line
// by line by tests/interop/test_foreign_disconnect.py.
//
// Usage: node faye_listen.js <endpoint URL> <json options>
//   options: {"transport": "websocket" | "long-polling", "channel": "/a/b",
//             "lifetime": <ms before giving up, default 60000>}
//
// The client subscribes to `channel` and reports, one JSON line each, what it
// sends and receives: {"event": "sent", "channel": ...} for every message it
// sends, {"event": "reply", ...} for every /meta reply (with its advice and
// error), {"event": "subscribed", "clientId": ...} when the subscription is
// acknowledged, and {"event": "message", "data": ...} for every delivery. It
// runs until its stdin closes (then {"event": "done"}, exit 0) or `lifetime`
// passes (then {"event": "error"}, exit 1).
'use strict';

const faye = require('faye');

const [endpoint, rawOptions] = process.argv.slice(2);
const options = JSON.parse(rawOptions || '{}');

const { emit, fail } = require('./report');

// retry: 1 so that a lost request is re-sent quickly instead of after 5 s.
const client = new faye.Client(endpoint, { timeout: 25, retry: 1 });
if (options.transport === 'long-polling') client.disable('websocket');
let clientId = null;
client.addExtension({
  outgoing: function (message, callback) {
    emit('sent', {
      channel: message.channel,
      clientId: message.clientId || null,
      connectionType: message.connectionType || null,
    });
    callback(message);
  },
  incoming: function (message, callback) {
    if (message.channel === '/meta/handshake' && message.successful) clientId = message.clientId;
    if (message.channel && message.channel.indexOf('/meta/') === 0) {
      emit('reply', {
        channel: message.channel,
        successful: !!message.successful,
        clientId: message.clientId || null,
        advice: message.advice || null,
        error: message.error || null,
      });
    }
    callback(message);
  },
});
client.on('transport:up', function () {
  emit('transport_up', { connectionType: client._dispatcher.connectionType });
});

client.subscribe(options.channel, function (data) {
  emit('message', { data: data });
}).then(function () {
  emit('subscribed', { clientId: clientId, connectionType: client._dispatcher.connectionType });
}, fail);

setTimeout(function () { fail('timed out'); }, options.lifetime || 60000);
// Stop when the test closes our stdin (or dies).
process.stdin.on('end', function () {
  emit('done');
  process.exit(0);
});
process.stdin.resume();
