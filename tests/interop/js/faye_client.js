// The npm faye 1.4.3 Node.js client against a Bayeux server, driven by
// tests/interop/test_faye_client.py.
//
// Usage: node faye_client.js <scenario> <endpoint URL> <json options>
//   scenario "pubsub": a subscriber (one plain channel and /chat/**), a second
//     client publishes to both; the publish promises resolve and the
//     subscriber receives both messages.
//   scenario "auth": a client whose extension adds a wrong ext.authToken to
//     /meta/subscribe is refused, one with the right token is accepted and
//     receives what a second client publishes.
//   options: {"transport": "websocket" | "long-polling", "channel": "/a/b",
//             "token": "...", "wrongToken": "..."}
//
// Every observation is one JSON line on stdout ({"event": ...}); the last one
// is {"event": "done"} (exit 0) or {"event": "error"} (exit 1).
'use strict';

const faye = require('faye');

const [scenario, endpoint, rawOptions] = process.argv.slice(2);
const options = JSON.parse(rawOptions || '{}');

const { emit, fail } = require('./report');

// Records what the client put on the wire and what came back: the
// connectionType of each /meta/connect it sent, and the ext of each connect
// reply (a probe extension on our server reports there which transport the
// connect really arrived on).
function observe(client, name) {
  client.addExtension({
    outgoing: function (message, callback) {
      if (message.channel === '/meta/connect') {
        emit('connect_sent', { client: name, connectionType: message.connectionType });
      }
      callback(message);
    },
    incoming: function (message, callback) {
      if (message.channel === '/meta/connect' && message.successful) {
        emit('connect_reply', { client: name, ext: message.ext || null });
      }
      callback(message);
    },
  });
  client.on('transport:up', function () {
    emit('transport_up', { client: name, connectionType: client._dispatcher.connectionType });
  });
}

function makeClient(name) {
  // retry: 1 so that a lost request is re-sent quickly instead of after 5 s.
  const client = new faye.Client(endpoint, { timeout: 25, retry: 1 });
  if (options.transport === 'long-polling') client.disable('websocket');
  observe(client, name);
  return client;
}

function withToken(client, token) {
  client.addExtension({
    outgoing: function (message, callback) {
      if (message.channel === '/meta/subscribe') {
        message.ext = Object.assign({}, message.ext, { authToken: token });
      }
      callback(message);
    },
  });
  return client;
}

function waitFor(predicate, what) {
  return new Promise(function (resolve, reject) {
    const started = Date.now();
    (function poll() {
      if (predicate()) return resolve();
      if (Date.now() - started > 10000) return reject(new Error('timed out waiting for ' + what));
      setTimeout(poll, 10);
    })();
  });
}

async function pubsub() {
  const channel = options.channel;
  const subscriber = makeClient('subscriber');
  const publisher = makeClient('publisher');
  const received = [];

  const plain = subscriber.subscribe(channel, function (data) {
    received.push({ channel: channel, data: data });
    emit('message', { subscription: channel, channel: channel, data: data });
  });
  const wildcard = subscriber.subscribe('/chat/**').withChannel(function (concrete, data) {
    received.push({ channel: concrete, data: data });
    emit('message', { subscription: '/chat/**', channel: concrete, data: data });
  });
  await plain;
  emit('subscribed', { subscription: channel });
  await wildcard;
  emit('subscribed', { subscription: '/chat/**' });

  await publisher.publish(channel, { text: 'hello', n: 1 });
  emit('published', { channel: channel });
  await publisher.publish('/chat/room/42', { text: 'wild', n: 2 });
  emit('published', { channel: '/chat/room/42' });

  await waitFor(function () { return received.length >= 2; }, 'two deliveries');
  emit('transport', {
    subscriber: subscriber._dispatcher.connectionType,
    publisher: publisher._dispatcher.connectionType,
  });
  await Promise.all([subscriber.disconnect(), publisher.disconnect()]);
}

async function auth() {
  const channel = options.channel;
  const intruder = withToken(makeClient('intruder'), options.wrongToken);
  const member = withToken(makeClient('member'), options.token);
  const publisher = makeClient('publisher');
  const received = [];

  try {
    await intruder.subscribe(channel, function (data) {
      emit('message', { client: 'intruder', data: data });
    });
    emit('subscribed', { client: 'intruder' });
  } catch (error) {
    emit('subscribe_failed', { client: 'intruder', message: error.message, code: error.code });
  }

  await member.subscribe(channel, function (data) {
    received.push(data);
    emit('message', { client: 'member', data: data });
  });
  emit('subscribed', { client: 'member' });

  await publisher.publish(channel, { secret: 42 });
  emit('published', { channel: channel });
  await waitFor(function () { return received.length >= 1; }, 'the delivery');
  // Give a wrongly accepted intruder the same chance to receive it.
  await new Promise(function (resolve) { setTimeout(resolve, 100); });
  await Promise.all([intruder.disconnect(), member.disconnect(), publisher.disconnect()]);
}

const scenarios = { pubsub: pubsub, auth: auth };

if (!scenarios[scenario]) fail('unknown scenario ' + scenario);
scenarios[scenario]().then(function () {
  emit('done');
  process.exit(0);
}, fail);
