// The npm faye 1.4.3 Node.js client kicked through our admin API, driven by
// tests/interop/test_admin_kick.py.
//
// Usage: node faye_kick.js <endpoint URL> <json options>
//   options: {"transport": "websocket" | "long-polling", "admin": "<admin URL>",
//             "token": "<bearer token>", "watch": <ms to watch after the kick>}
//
// The client subscribes, waits for its next connect to be held, asks the
// admin API to kick it, then records for `watch` ms what it sends. One JSON
// line per observation; the last is {"event": "done"} or {"event": "error"}.
'use strict';

const faye = require('faye');
const http = require('http');

const [endpoint, rawOptions] = process.argv.slice(2);
const options = JSON.parse(rawOptions || '{}');

const { emit, fail } = require('./report');

function kick(clientId) {
  return new Promise(function (resolve, reject) {
    const url = new URL(options.admin + '/clients/' + encodeURIComponent(clientId));
    const request = http.request(
      url,
      { method: 'DELETE', headers: { authorization: 'Bearer ' + options.token } },
      function (response) {
        let body = '';
        response.on('data', function (chunk) { body += chunk; });
        response.on('end', function () { resolve({ status: response.statusCode, body: body }); });
      }
    );
    request.on('error', reject);
    request.end();
  });
}

const client = new faye.Client(endpoint, { timeout: 25 });
if (options.transport === 'long-polling') client.disable('websocket');
let clientId = null;
let connectsSent = 0;
client.addExtension({
  outgoing: function (message, callback) {
    emit('sent', { channel: message.channel });
    if (message.channel === '/meta/connect') connectsSent += 1;
    callback(message);
  },
  incoming: function (message, callback) {
    if (message.channel === '/meta/handshake' && message.successful) clientId = message.clientId;
    if (message.channel && message.channel.indexOf('/meta/') === 0) {
      emit('reply', {
        channel: message.channel,
        successful: !!message.successful,
        advice: message.advice || null,
      });
    }
    callback(message);
  },
});

const subscription = client.subscribe('/kick/news', function () {});
subscription.then(function () {
  emit('subscribed', { clientId: clientId });
  // Wait (bounded) until a second connect went out: the server holds it.
  let waited = 0;
  const poll = setInterval(function () {
    waited += 50;
    if (connectsSent >= 2 || waited > 10000) {
      clearInterval(poll);
      setTimeout(function () {
        emit('kick', {});
        kick(clientId).then(function (answer) {
          emit('kicked', answer);
          setTimeout(function () { emit('done'); process.exit(0); }, options.watch || 2000);
        }, fail);
      }, 300);
    }
  }, 50);
}, fail);
setTimeout(function () { fail('timed out'); }, 20000);
