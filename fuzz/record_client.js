// One short session of the npm faye 1.4.3 Node.js client, for
// fuzz/record_seeds.py: handshake, subscribe, publish, receive the message
// back, disconnect.
//
// Usage: node record_client.js <endpoint URL> <websocket | long-polling>
'use strict';

const faye = require('faye');

const [endpoint, transport] = process.argv.slice(2);
const client = new faye.Client(endpoint, { timeout: 25, retry: 1 });
if (transport === 'long-polling') client.disable('websocket');

const limit = setTimeout(function () {
  process.stderr.write('timed out\n');
  process.exit(1);
}, 15000);

const subscription = client.subscribe('/chat/room', function (message) {
  if (message.text !== 'hello') return;
  subscription.cancel();
  client.publish('/chat/other', { text: 'bye', n: [1, 2.5, null, true] });
  // Give the unsubscribe and publish a moment to reach the server first.
  setTimeout(function () {
    client.disconnect();
    setTimeout(function () {
      clearTimeout(limit);
      process.exit(0);
    }, 300);
  }, 300);
});
subscription.then(function () {
  client.publish('/chat/room', { text: 'hello', from: 'faye \u00e9\u2028' });
});
