// npm faye 1.4.3 clients as long-running subscribers and publishers, for the
// failover tests of tests/redis/test_failover_order.py (a node of a Redis
// cluster is SIGKILLed while they run).
//
// Usage: node faye_failover.js '<json options>'
//   options.channel: the channel every client uses
//   options.subscribers: [{"name", "endpoint", "transport"}]: each subscribes
//     to the channel and reports every delivery
//   options.publishers: [{"name", "endpoint", "transport", "count", "every"}]:
//     each publishes {p: name, n} for n = 0 .. count - 1, one every `every`
//     ms, without waiting for the previous one's reply (as a page sending
//     what its user types does)
//   options.lifetime: ms before giving up (default 60000)
//   transport: "websocket" (faye's default: WebSocket after an HTTP
//     handshake) or "long-polling"
//
// Output, one JSON line each: {"event":"subscribed","client","clientId"} once a
// subscription is acknowledged, {"event":"message","client","data"} per
// delivery, {"event":"published","client","n","ok"} per publish result,
// {"event":"transport_down","client"} when a client's transport fails. It
// runs until its stdin closes (then {"event":"done"}, exit 0) or `lifetime`
// passes ({"event":"error"}, exit 1).
//
// HTTP keep-alive is off, so that behind a round-robin proxy each
// long-polling request is a new TCP connection, landing on the next node.
'use strict';

const http = require('http');
const faye = require('faye');

const options = JSON.parse(process.argv[2] || '{}');

const { emit, fail } = require('./report');

process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);

http.globalAgent = new http.Agent({ keepAlive: false });

function makeClient(spec) {
  // retry: 1 so that what a dead node never answered is sent again after 1 s.
  const client = new faye.Client(spec.endpoint, { timeout: 25, retry: 1 });
  if (spec.transport === 'long-polling') client.disable('websocket');
  client.on('transport:down', function () {
    emit('transport_down', { client: spec.name });
  });
  return client;
}

const clients = [];

async function subscribe(spec) {
  const client = makeClient(spec);
  clients.push(client);
  await client.subscribe(options.channel, function (data) {
    emit('message', { client: spec.name, data: data });
  });
  emit('subscribed', { client: spec.name, clientId: client._dispatcher.clientId });
}

async function publish(spec) {
  const client = makeClient(spec);
  clients.push(client);
  await client.connect();
  for (let n = 0; n < spec.count; n++) {
    client.publish(options.channel, { p: spec.name, n: n }).then(
      function () {
        emit('published', { client: spec.name, n: n, ok: true });
      },
      function (error) {
        emit('published', { client: spec.name, n: n, ok: false, error: String(error) });
      }
    );
    await new Promise((resolve) => setTimeout(resolve, spec.every));
  }
}

async function main() {
  setTimeout(function () {
    fail('lifetime over');
  }, options.lifetime || 60000).unref();
  const finished = new Promise(function (resolve) {
    process.stdin.on('end', resolve);
    process.stdin.on('close', resolve);
    process.stdin.resume();
  });
  await Promise.all((options.subscribers || []).map(subscribe));
  await Promise.all((options.publishers || []).map(publish));
  await finished;
  // No disconnect: a node may be gone, and the test is over anyway.
}

main().then(function () {
  emit('done');
  process.exit(0);
}, fail);
