// The npm faye 1.4.3 Node.js client against several bayeux-trio nodes sharing
// one Redis, driven by tests/redis/test_faye_client.py.
//
// Usage: node faye_cluster.js '<json options>'
//   options.subscribers: [{"name", "endpoint", "transport"}], each subscribes
//     to options.channel (transport "websocket" or "long-polling")
//   options.publishers: [{"name", "endpoint", "transport"}], publisher p sends
//     options.messages messages {p, n} in order, each after the previous one
//     was acknowledged
//   options.seconds: how long to wait for every delivery at most
//
// HTTP keep-alive is turned off, so that every long-polling request is a new
// TCP connection: behind the test's round-robin proxy, each request then
// lands on the next node.
//
// Output: JSON lines: {"event":"message","client":name,"data":{p,n}} per
// delivery, {"event":"complete"} or {"event":"incomplete"}, then
// {"event":"done"}; or {"event":"error"} (exit 1).
'use strict';

const http = require('http');
const faye = require('faye');

const options = JSON.parse(process.argv[2] || '{}');

const { emit, fail } = require('../../interop/js/report');

process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);

http.globalAgent = new http.Agent({ keepAlive: false });

function makeClient(spec) {
  // retry: 1 so that a lost request is re-sent quickly instead of after 5 s.
  const client = new faye.Client(spec.endpoint, { timeout: 25, retry: 1 });
  if (spec.transport === 'long-polling') client.disable('websocket');
  return client;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function main() {
  const expected = options.publishers.length * options.messages;
  const counts = {};
  const subscribers = [];
  for (const spec of options.subscribers) {
    const client = makeClient(spec);
    counts[spec.name] = 0;
    await client.subscribe(options.channel, function (data) {
      counts[spec.name] += 1;
      emit('message', { client: spec.name, data: data });
    });
    subscribers.push(client);
  }
  emit('subscribed');

  const publishers = options.publishers.map(makeClient);
  await Promise.all(
    publishers.map(async function (client, p) {
      for (let n = 0; n < options.messages; n++) {
        await client.publish(options.channel, { p: p, n: n });
      }
    })
  );
  emit('published');

  const deadline = Date.now() + 1000 * (options.seconds || 30);
  const complete = () => Object.values(counts).every((c) => c >= expected);
  while (!complete() && Date.now() < deadline) await sleep(20);
  // A little longer, so that a duplicate arriving late is seen.
  await sleep(500);
  emit(complete() ? 'complete' : 'incomplete', { counts: counts });
  await Promise.all(subscribers.concat(publishers).map((c) => c.disconnect()));
}

main().then(function () {
  emit('done');
  process.exit(0);
}, fail);
