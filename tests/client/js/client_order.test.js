// client.js keeps the page's messages in order across a reconnect (issue 18):
// unit tests without a server or a browser, run by test_client_js_order.py
// (`node --test`).
//
// Each test loads bayeux_trio/static/client.js (or the file in $CLIENT_JS)
// into a fresh vm context whose window has a fake clock, a fake
// XMLHttpRequest and a fake WebSocket: the test plays the server, and sees
// every request and frame in the order the client sent them. The failover
// test (tests/redis/test_failover_order.py) checks the same with Chromium
// and two real nodes, one of them SIGKILLed.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');

const CLIENT_JS = process.env.CLIENT_JS ||
  path.resolve(__dirname, '..', '..', '..', 'bayeux_trio', 'static', 'client.js');
const SOURCE = fs.readFileSync(CLIENT_JS, 'utf8');
const ORIGIN = 'http://127.0.0.1:9';
const ENDPOINT = ORIGIN + '/faye';
const CHANNEL = '/order';

// Lets promise callbacks (client.js's and the fakes') run.
function settle() {
  return new Promise((resolve) => setImmediate(resolve));
}

// Timers that run only when the test moves the clock on, in time order.
class Clock {
  constructor() {
    this.now = 0;
    this.timers = new Map();
    this.lastId = 0;
  }

  setTimeout(fn, ms) {
    const id = ++this.lastId;
    this.timers.set(id, { at: this.now + Math.max(0, Number(ms) || 0), fn: fn });
    return id;
  }

  clearTimeout(id) {
    this.timers.delete(id);
  }

  async advance(ms) {
    const until = this.now + ms;
    await settle();
    for (;;) {
      let next = null;
      for (const [id, timer] of this.timers) {
        if (timer.at <= until && (next === null || timer.at < next[1].at)) next = [id, timer];
      }
      if (next === null) break;
      this.timers.delete(next[0]);
      this.now = next[1].at;
      next[1].fn();
      await settle();
    }
    this.now = until;
    await settle();
  }
}

function reply(message, extra) {
  return Object.assign({ channel: message.channel, id: message.id, successful: true }, extra);
}

function isPublish(message) {
  return message.channel === CHANNEL;
}

// A window for client.js, and the client.js loaded in it. The fake server
// answers handshakes, and connects that must not be held, by itself; it
// holds other connects (world.held) and leaves publishes to the test.
function makeWorld() {
  const clock = new Clock();
  const world = { clock: clock, requests: [], sockets: [], held: [] };

  class FakeXHR {
    constructor() {
      this.readyState = 0;
      this.status = 0;
      this.responseText = '';
      this.finished = false;
      this.onreadystatechange = null;
    }

    open(method, url) {
      this.method = method;
      this.url = url;
      this.readyState = 1;
    }

    setRequestHeader() {}

    send(body) {
      this.messages = JSON.parse(body);
      world.requests.push(this);
      Promise.resolve().then(() => autoAnswer(this));
    }

    respond(replies) {
      if (this.finished) throw new Error('answered twice: ' + JSON.stringify(this.messages));
      this.finished = true;
      this.status = 200;
      this.responseText = JSON.stringify(replies);
      this.readyState = 4;
      this.onreadystatechange();
    }

    // The connection broke (a node died).
    fail() {
      if (this.finished) return;
      this.finished = true;
      this.status = 0;
      this.readyState = 4;
      this.onreadystatechange();
    }

    abort() {
      this.fail();
    }

    answer() {
      this.respond(this.messages.map((m) => reply(m)));
    }
  }

  function autoAnswer(request) {
    const channels = request.messages.map((m) => m.channel);
    if (channels.includes('/meta/handshake')) {
      request.respond(request.messages.map((m) => reply(m, {
        clientId: 'client-1', version: '1.0',
        supportedConnectionTypes: ['websocket', 'long-polling'],
        advice: { reconnect: 'retry', interval: 0, timeout: 60000 }
      })));
    } else if (channels.length === 1 && channels[0] === '/meta/connect') {
      world.held.push(request);
    }
  }

  class FakeWebSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.frames = []; // every message sent on this socket, in order
      world.sockets.push(this);
    }

    send(text) {
      this.frames.push(...JSON.parse(text));
    }

    open() {
      this.readyState = 1;
      this.onopen();
    }

    reply(replies) {
      this.onmessage({ data: JSON.stringify(replies) });
    }

    // The server went away (or never answered the upgrade).
    drop() {
      this.readyState = 3;
      if (this.onclose) this.onclose({});
    }

    close() {
      Promise.resolve().then(() => this.drop());
    }
  }

  const window = {
    setTimeout: (fn, ms) => clock.setTimeout(fn, ms),
    clearTimeout: (id) => clock.clearTimeout(id),
    location: { href: ORIGIN + '/', protocol: 'http:', hostname: '127.0.0.1', port: '9' },
    XMLHttpRequest: FakeXHR,
    WebSocket: FakeWebSocket,
    URL: URL
  };
  window.window = window;
  vm.runInNewContext(SOURCE, window, { filename: CLIENT_JS });
  world.Faye = window.Faye;
  return world;
}

// A client with `retry: 0.5`, handshaken and connected.
async function connectedClient(world, transport) {
  const client = new world.Faye.Client(ENDPOINT, { retry: 0.5 });
  if (transport === 'long-polling') client.disable('websocket');
  let connected = false;
  client.connect(() => { connected = true; });
  await world.clock.advance(20); // the handshake's batch waits 10 ms
  if (transport === 'websocket') {
    world.sockets[0].open();
    await world.clock.advance(0);
  }
  assert.ok(connected, 'the client did not connect');
  assert.equal(client._dispatcher.connectionType, transport);
  return client;
}

function publish(client, n) {
  const publication = client.publish(CHANNEL, { n: n });
  publication.then(null, () => {});
}

function numbers(messages) {
  return messages.filter(isPublish).map((m) => m.data.n);
}

function publishRequests(world) {
  return world.requests.filter((r) => r.messages.some(isPublish));
}

test('a message waiting to be sent again holds back later ones (WebSocket)', async () => {
  const world = makeWorld();
  const client = await connectedClient(world, 'websocket');
  publish(client, 0);
  publish(client, 1);
  await world.clock.advance(0);
  const first = world.sockets[0];
  const ids = first.frames.filter(isPublish).map((m) => m.id);
  assert.deepEqual(numbers(first.frames), [0, 1]);

  // The node dies: the socket drops, and reopening it fails.
  first.drop();
  await world.clock.advance(0);
  assert.equal(world.sockets.length, 2, 'the unanswered messages go again at once');
  world.sockets[1].drop();
  await world.clock.advance(0);

  // Made while 0 and 1 wait for their retry: they wait behind them.
  publish(client, 2);
  publish(client, 3);
  await world.clock.advance(100);
  assert.equal(world.sockets.length, 2, 'a later publish went before the retry');

  await world.clock.advance(500);
  assert.equal(world.sockets.length, 3);
  const last = world.sockets[2];
  last.open();
  await world.clock.advance(0);
  assert.deepEqual(numbers(last.frames), [0, 1, 2, 3]);
  assert.deepEqual(last.frames.filter(isPublish).slice(0, 2).map((m) => m.id), ids);
});

test('long-polling keeps one request out at a time; a connect is not held back', async () => {
  const world = makeWorld();
  const client = await connectedClient(world, 'long-polling');
  await world.clock.advance(0);
  assert.equal(world.held.length, 1, 'a held connect');

  publish(client, 0);
  await world.clock.advance(0);
  publish(client, 1);
  await world.clock.advance(0);
  let publishing = publishRequests(world);
  assert.deepEqual(publishing.map((r) => numbers(r.messages)), [[0]]);

  // The server answers the held connect: the next one goes at once, alone.
  world.held[0].answer();
  await world.clock.advance(0);
  assert.equal(world.held.length, 2);
  assert.deepEqual(world.held[1].messages.map((m) => m.channel), ['/meta/connect']);

  publishing[0].answer();
  await world.clock.advance(0);
  publishing = publishRequests(world);
  assert.deepEqual(publishing.map((r) => numbers(r.messages)), [[0], [1]]);
});

test('a failed request goes again before what was made after it (long-polling)', async () => {
  const world = makeWorld();
  const client = await connectedClient(world, 'long-polling');
  const down = [];
  client.bind('transport:down', () => down.push(world.clock.now));
  publish(client, 0);
  await world.clock.advance(0);
  publish(client, 1); // wait behind the request out
  publish(client, 2);
  await world.clock.advance(0);
  const [failing] = publishRequests(world);
  const id0 = failing.messages.find(isPublish).id;
  failing.fail();
  await world.clock.advance(0);
  assert.equal(down.length, 1);

  publish(client, 3); // made while 0, 1 and 2 wait for their retry
  await world.clock.advance(100);
  assert.equal(publishRequests(world).length, 1, 'a later publish went before the retry');
  // Connects are the session's, not the page's: they do not wait.
  world.held[0].answer();
  await world.clock.advance(0);
  assert.equal(world.held.length, 2);

  await world.clock.advance(500);
  const sent = [];
  for (let i = 0; i < 10; i++) {
    const out = publishRequests(world).filter((r) => !r.finished);
    assert.ok(out.length <= 1, 'two publish requests out at once');
    if (out.length === 0) break;
    sent.push(...out[0].messages.filter(isPublish));
    out[0].answer();
    await world.clock.advance(0);
  }
  assert.deepEqual(sent.map((m) => m.data.n), [0, 1, 2, 3]);
  assert.equal(sent[0].id, id0, 'a message sent again keeps its id');
});

test('a message out on the previous transport holds back later ones', async () => {
  const world = makeWorld();
  const client = new world.Faye.Client(ENDPOINT, { retry: 0.5 });
  let connected = false;
  client.connect(() => { connected = true; });
  // The WebSocket opened at the handshake takes more than 2 s: the client
  // connects over long-polling meanwhile.
  await world.clock.advance(2100);
  assert.ok(connected);
  assert.equal(client._dispatcher.connectionType, 'long-polling');
  publish(client, 0);
  await world.clock.advance(0);
  const [http] = publishRequests(world);

  world.sockets[0].open(); // now the client takes the WebSocket
  await world.clock.advance(0);
  assert.equal(client._dispatcher.connectionType, 'websocket');
  publish(client, 1);
  await world.clock.advance(0);
  assert.deepEqual(numbers(world.sockets[0].frames), [], '1 went before 0 was answered');

  http.answer();
  await world.clock.advance(0);
  assert.deepEqual(numbers(world.sockets[0].frames), [1]);
});
