// Bayeux load generator for bench/server_bench.py: one scenario against one
// server on loopback, results as JSON lines on stdout.
//
// Usage: node loadgen.js '<json options>'
//   options.scenario  fanout | rate | longpoll | channels | idle | httppub | pingpong
//   options.port      the server's port on 127.0.0.1; options.path its mount (/faye)
//   options.pid       the server's pid: its CPU time (utime + stime from
//                     /proc/<pid>/stat) and RSS are read at the start and the
//                     end of the measured phase
//   options.client    "raw" (default): this file's own lean WebSocket and
//                     HTTP/1.1 clients, so that the generator spends as little
//                     CPU as it can per delivery; "faye": the npm faye 1.4.3
//                     client (fanout and pingpong only), to check the raw
//                     numbers against the reference client
//   plus per-scenario sizes (see DEFAULTS).
//
// Every wait and loop is bounded in count and in time (options.deadline
// seconds for the measured phase); the process exits on its own. Output: one
// {"event":"result", ...} line, then {"event":"done"}; or {"event":"error"}.
'use strict';

const net = require('net');
const crypto = require('crypto');
const fs = require('fs');

const DEFAULTS = {
  path: '/faye',
  client: 'raw',
  subscribers: 500,
  messages: 200,
  window: 256, // publishes a publisher may have unacknowledged ("as fast as accepted")
  rate: 10000, // deliveries per second offered (scenario "rate")
  seconds: 5,
  connections: 16, // scenario "httppub"
  roundtrips: 2000,
  concurrency: 200, // connections being set up at once
  settle: 2, // seconds to wait before reading the idle RSS
  deadline: 60, // seconds the measured phase may take at most
  setupDeadline: 120,
  pad: 64, // bytes of filler in each published message
};

const options = Object.assign({}, DEFAULTS, JSON.parse(process.argv[2] || '{}'));
const HOST = '127.0.0.1';
const CLK_TCK = 100; // USER_HZ on Linux

function emit(event, fields) {
  process.stdout.write(JSON.stringify(Object.assign({ event: event }, fields || {})) + '\n');
}

function fail(error) {
  emit('error', { message: String((error && error.stack) || error) });
  process.exit(1);
}

process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);

// ------------------------------------------------------------------ /proc

function serverStat() {
  if (!options.pid) return { cpu: 0, rss: 0 };
  const stat = fs.readFileSync(`/proc/${options.pid}/stat`, 'latin1');
  // Fields after the command name, which is in parentheses and may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const cpu = (Number(fields[11]) + Number(fields[12])) / CLK_TCK; // utime + stime
  const status = fs.readFileSync(`/proc/${options.pid}/status`, 'latin1');
  const match = /VmRSS:\s+(\d+) kB/.exec(status);
  return { cpu: cpu, rss: match ? Number(match[1]) * 1024 : 0 };
}

function now() {
  return performance.timeOrigin + performance.now(); // ms, shared by every client here
}

class Meter {
  constructor() {
    this.t0 = now();
    this.server0 = serverStat();
    this.self0 = process.cpuUsage();
  }

  finish(fields) {
    const elapsed = (now() - this.t0) / 1000;
    const server1 = serverStat();
    const self = process.cpuUsage(this.self0);
    return Object.assign(
      {
        seconds: elapsed,
        server_cpu: server1.cpu - this.server0.cpu,
        server_rss: server1.rss,
        generator_cpu: (self.user + self.system) / 1e6,
      },
      fields
    );
  }
}

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index];
}

function latencyStats(samples) {
  const sorted = Float64Array.from(samples).sort();
  return {
    samples: sorted.length,
    p50_ms: percentile(sorted, 50),
    p99_ms: percentile(sorted, 99),
    max_ms: sorted.length ? sorted[sorted.length - 1] : null,
  };
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Resolves when check() is true, polling every `every` ms; rejects after `seconds`.
function until(check, seconds, what, every) {
  const deadline = Date.now() + seconds * 1000;
  return new Promise((resolve, reject) => {
    const poll = () => {
      if (check()) return resolve();
      if (Date.now() > deadline) return reject(new Error(`timed out after ${seconds} s: ${what}`));
      setTimeout(poll, every || 5);
    };
    poll();
  });
}

// Runs make(i) for i in [0, n), at most `limit` at once.
async function pool(n, limit, make) {
  let next = 0;
  const results = new Array(n);
  async function worker() {
    while (next < n) {
      const i = next++;
      results[i] = await make(i);
    }
  }
  await Promise.all(Array.from({ length: Math.min(n, limit) }, worker));
  return results;
}

// Counts occurrences of `needle` (a Buffer) in `buf`: how many published
// messages a frame or body holds, without parsing JSON.
function countOf(buf, needle) {
  let count = 0;
  let at = buf.indexOf(needle);
  while (at !== -1) {
    count += 1;
    at = buf.indexOf(needle, at + needle.length);
  }
  return count;
}

const SEQ = Buffer.from('"seq":');
const META_CONNECT = Buffer.from('"/meta/connect"');
const PAD = 'x'.repeat(options.pad);

// ------------------------------------------------------- raw WebSocket

// A minimal RFC 6455 client: masked text frames out; unmasked frames in,
// each complete text message handed to onMessage as a Buffer.
class RawWebSocket {
  constructor(onMessage) {
    this.onMessage = onMessage;
    this.socket = null;
    this.rest = null;
    this.parts = null;
    this.closed = false;
  }

  open(port, path) {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: HOST, port: port });
      this.socket = socket;
      socket.setNoDelay(true);
      let head = Buffer.alloc(0);
      const key = crypto.randomBytes(16).toString('base64');
      const onData = (data) => {
        head = Buffer.concat([head, data]);
        const end = head.indexOf('\r\n\r\n');
        if (end === -1) {
          if (head.length > 8192) reject(new Error('upgrade response too large'));
          return;
        }
        socket.removeListener('data', onData);
        const status = head.subarray(0, end).toString('latin1');
        if (!/^HTTP\/1\.1 101/.test(status)) {
          reject(new Error(`upgrade refused: ${status.split('\r\n')[0]}`));
          socket.destroy();
          return;
        }
        socket.on('data', (chunk) => this.receive(chunk));
        const leftover = head.subarray(end + 4);
        if (leftover.length) this.receive(leftover);
        resolve(this);
      };
      socket.on('data', onData);
      socket.on('error', (error) => {
        this.closed = true;
        reject(error);
      });
      socket.on('close', () => {
        this.closed = true;
      });
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: ${HOST}:${port}\r\nUpgrade: websocket\r\n` +
          `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`
      );
    });
  }

  receive(chunk) {
    let buf = this.rest ? Buffer.concat([this.rest, chunk]) : chunk;
    this.rest = null;
    let at = 0;
    while (buf.length - at >= 2) {
      const b0 = buf[at];
      const b1 = buf[at + 1];
      let size = b1 & 0x7f;
      let start = at + 2;
      if (size === 126) {
        if (buf.length - at < 4) break;
        size = buf.readUInt16BE(at + 2);
        start = at + 4;
      } else if (size === 127) {
        if (buf.length - at < 10) break;
        size = Number(buf.readBigUInt64BE(at + 2));
        start = at + 10;
      }
      if (b1 & 0x80) throw new Error('the server sent a masked frame');
      if (buf.length < start + size) break;
      const payload = buf.subarray(start, start + size);
      at = start + size;
      const opcode = b0 & 0x0f;
      const fin = (b0 & 0x80) !== 0;
      if (opcode === 1 || opcode === 0) {
        if (fin && this.parts === null) {
          this.onMessage(payload);
        } else {
          this.parts = this.parts || [];
          this.parts.push(Buffer.from(payload));
          if (fin) {
            const whole = Buffer.concat(this.parts);
            this.parts = null;
            this.onMessage(whole);
          }
        }
      } else if (opcode === 9) {
        this.frame(0x8a, Buffer.from(payload));
      } else if (opcode === 8) {
        this.closed = true;
        this.socket.end();
        return;
      }
    }
    if (at < buf.length) this.rest = Buffer.from(buf.subarray(at));
  }

  frame(first, payload) {
    const size = payload.length;
    let header;
    if (size < 126) {
      header = Buffer.from([first, 0x80 | size, 0, 0, 0, 0]);
    } else if (size < 65536) {
      header = Buffer.from([first, 0x80 | 126, size >> 8, size & 0xff, 0, 0, 0, 0]);
    } else {
      header = Buffer.alloc(14);
      header[0] = first;
      header[1] = 0x80 | 127;
      header.writeBigUInt64BE(BigInt(size), 2);
    }
    const mask = crypto.randomBytes(4);
    mask.copy(header, header.length - 4);
    const masked = Buffer.allocUnsafe(size);
    for (let i = 0; i < size; i++) masked[i] = payload[i] ^ mask[i & 3];
    this.socket.write(Buffer.concat([header, masked]));
  }

  send(messages) {
    if (this.closed) return;
    this.frame(0x81, Buffer.from(JSON.stringify(messages)));
  }

  close() {
    if (this.socket) this.socket.destroy();
    this.closed = true;
  }
}

// A Bayeux session over RawWebSocket. Replies to /meta/* are parsed and
// matched by id; everything else goes to onData(buffer) unparsed.
class WsSession {
  constructor(onData) {
    this.onData = onData || (() => {});
    this.ws = new RawWebSocket((payload) => this.dispatch(payload));
    this.clientId = null;
    this.nextId = 1;
    this.waiting = new Map();
    this.connecting = false;
    this.stopped = false;
  }

  dispatch(payload) {
    // Frames holding data messages are counted by the caller; replies
    // (which carry "successful") are parsed here.
    if (payload.indexOf('"successful"') === -1) {
      this.onData(payload);
      return;
    }
    const messages = JSON.parse(payload.toString('utf8'));
    let data = 0;
    for (const message of messages) {
      if (message.successful === undefined) {
        data += 1;
        continue;
      }
      if (message.channel === '/meta/connect') {
        this.connecting = false;
        if (message.successful && !this.stopped) this.connect();
        continue;
      }
      const waiter = this.waiting.get(message.id);
      if (waiter) {
        this.waiting.delete(message.id);
        waiter(message);
      }
    }
    if (data) this.onData(payload);
  }

  request(message) {
    const id = String(this.nextId++);
    message.id = id;
    if (this.clientId && !message.clientId) message.clientId = this.clientId;
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.ws.send([message]);
    });
  }

  async open(port, path) {
    await this.ws.open(port, path);
    const reply = await this.request({
      channel: '/meta/handshake',
      version: '1.0',
      supportedConnectionTypes: ['websocket'],
    });
    if (!reply.successful) throw new Error(`handshake refused: ${JSON.stringify(reply)}`);
    this.clientId = reply.clientId;
    this.connect();
    return this;
  }

  connect() {
    if (this.connecting || this.ws.closed) return;
    this.connecting = true;
    this.ws.send([
      {
        channel: '/meta/connect',
        clientId: this.clientId,
        connectionType: 'websocket',
        id: String(this.nextId++),
      },
    ]);
  }

  async subscribe(channel) {
    const reply = await this.request({ channel: '/meta/subscribe', subscription: channel });
    if (!reply.successful) throw new Error(`subscribe refused: ${JSON.stringify(reply)}`);
  }

  // Publishes without waiting; onReply(message) gets the publish reply.
  publish(channel, data, onReply) {
    const id = String(this.nextId++);
    this.waiting.set(id, onReply);
    this.ws.send([{ channel: channel, data: data, clientId: this.clientId, id: id }]);
  }

  disconnect() {
    this.stopped = true;
    if (!this.ws.closed && this.clientId) {
      this.ws.send([{ channel: '/meta/disconnect', clientId: this.clientId, id: 'bye' }]);
    }
  }

  close() {
    this.stopped = true;
    this.ws.close();
  }
}

// Publishes `count` messages to channelOf(i), keeping at most `window`
// unacknowledged; resolves when every publish has been acknowledged.
function publishAll(publisher, count, channelOf, window, dataOf, deadline) {
  return new Promise((resolve, reject) => {
    let sent = 0;
    let acked = 0;
    let failed = 0;
    const timer = setTimeout(
      () => reject(new Error(`publishing timed out: ${acked}/${count} acknowledged`)),
      deadline * 1000
    );
    const onReply = (reply) => {
      acked += 1;
      if (!reply.successful) failed += 1;
      if (acked === count) {
        clearTimeout(timer);
        resolve({ acked: acked, failed: failed });
      } else {
        pump();
      }
    };
    const pump = () => {
      while (sent < count && sent - acked < window) {
        publisher.publish(channelOf(sent), dataOf(sent), onReply);
        sent += 1;
      }
    };
    if (count === 0) resolve({ acked: 0, failed: 0 });
    else pump();
  });
}

async function openSessions(n, setup) {
  return pool(n, options.concurrency, async (i) => {
    const session = await setup(i);
    return session;
  });
}

function endSessions(sessions) {
  for (const session of sessions) session.disconnect();
}

async function closeAll(sessions) {
  await sleep(100); // let the disconnects go out
  for (const session of sessions) session.close();
}

// ------------------------------------------------------------ scenarios

// 1 and 4: N subscribers, one publisher, M messages as fast as acknowledged
// (at most `window` outstanding). channels: one channel for all, or one each.
async function fanout(perSubscriberChannel) {
  const n = options.subscribers;
  const m = options.messages;
  let delivered = 0;
  const channelOf = (i) => (perSubscriberChannel ? `/bench/ch/${i % n}` : '/bench/fanout');
  const onData = (payload) => {
    delivered += countOf(payload, SEQ);
  };
  const subscribers = await openSessions(n, async (i) => {
    const session = await new WsSession(onData).open(options.port, options.path);
    await session.subscribe(perSubscriberChannel ? `/bench/ch/${i}` : '/bench/fanout');
    return session;
  });
  const publisher = await new WsSession().open(options.port, options.path);
  const data = (i) => ({ seq: i, t: now(), pad: PAD });
  const perMessage = perSubscriberChannel ? 1 : n;

  // Warm up: a few messages, all delivered, not measured.
  const warm = perSubscriberChannel ? n : 5;
  await publishAll(publisher, warm, channelOf, options.window, data, options.deadline);
  await until(() => delivered >= warm * perMessage, options.deadline, 'warm-up deliveries');
  delivered = 0;
  await sleep(200);

  const meter = new Meter();
  const acks = await publishAll(publisher, m, channelOf, options.window, data, options.deadline);
  const expected = m * perMessage;
  await until(() => delivered >= expected, options.deadline, `deliveries (${delivered}/${expected})`, 1);
  const result = meter.finish({
    subscribers: n,
    messages: m,
    deliveries: delivered,
    expected: expected,
    publish_failures: acks.failed,
  });
  result.deliveries_per_s = delivered / result.seconds;
  result.deliveries_per_cpu_s = result.server_cpu > 0 ? delivered / result.server_cpu : null;
  endSessions([...subscribers, publisher]);
  await closeAll([...subscribers, publisher]);
  return result;
}

// 2: N subscribers, messages at a fixed rate so that N * rate = options.rate
// deliveries/s; latency from the publish timestamp in each message.
async function rate() {
  const n = options.subscribers;
  const samples = [];
  let delivered = 0;
  let measuring = false;
  const onData = (payload) => {
    const at = now();
    for (const message of JSON.parse(payload.toString('utf8'))) {
      if (message.data && message.data.t !== undefined) {
        delivered += 1;
        if (measuring) samples.push(at - message.data.t);
      }
    }
  };
  const subscribers = await openSessions(n, async () => {
    const session = await new WsSession(onData).open(options.port, options.path);
    await session.subscribe('/bench/rate');
    return session;
  });
  const publisher = await new WsSession().open(options.port, options.path);
  const channelOf = () => '/bench/rate';
  const data = (i) => ({ seq: i, t: now(), pad: PAD });
  await publishAll(publisher, 5, channelOf, 1, data, options.deadline);
  await until(() => delivered >= 5 * n, options.deadline, 'warm-up deliveries');
  delivered = 0;

  const perSecond = options.rate / n; // publishes per second
  const total = Math.max(1, Math.round(perSecond * options.seconds));
  const interval = 1000 / perSecond;
  let failed = 0;
  let acked = 0;
  const onReply = (reply) => {
    acked += 1;
    if (!reply.successful) failed += 1;
  };
  measuring = true;
  const meter = new Meter();
  const start = now();
  let sent = 0;
  await new Promise((resolve) => {
    // Publishes at start + k * interval; catches up if a timer fires late.
    const tick = () => {
      const t = now();
      while (sent < total && start + sent * interval <= t) {
        publisher.publish('/bench/rate', data(sent), onReply);
        sent += 1;
      }
      if (sent >= total) return resolve();
      setTimeout(tick, Math.max(0, start + sent * interval - now()));
    };
    tick();
  });
  const expected = total * n;
  await until(() => delivered >= expected, options.deadline, `deliveries (${delivered}/${expected})`, 1);
  const result = meter.finish(
    Object.assign(
      {
        subscribers: n,
        messages: total,
        deliveries: delivered,
        expected: expected,
        offered_per_s: options.rate,
        publish_failures: failed,
      },
      latencyStats(samples)
    )
  );
  result.deliveries_per_s = delivered / result.seconds;
  result.server_cpu_percent = (100 * result.server_cpu) / result.seconds;
  endSessions([...subscribers, publisher]);
  await closeAll([...subscribers, publisher]);
  return result;
}

// ----------------------------------------------------- raw HTTP/1.1

// One keep-alive connection; one request at a time; responses must carry
// Content-Length (both servers send it).
class RawHttp {
  constructor(port) {
    this.port = port;
    this.socket = null;
    this.buf = null;
    this.pending = null;
    this.closed = false;
  }

  open() {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: HOST, port: this.port }, () => resolve(this));
      socket.setNoDelay(true);
      this.socket = socket;
      socket.on('data', (chunk) => this.receive(chunk));
      socket.on('error', (error) => {
        this.closed = true;
        if (this.pending) this.pending.reject(error);
        else reject(error);
      });
      socket.on('close', () => {
        this.closed = true;
        if (this.pending) this.pending.reject(new Error('connection closed'));
      });
    });
  }

  receive(chunk) {
    this.buf = this.buf ? Buffer.concat([this.buf, chunk]) : chunk;
    const end = this.buf.indexOf('\r\n\r\n');
    if (end === -1) return;
    const head = this.buf.subarray(0, end).toString('latin1');
    const match = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    if (!match) throw new Error(`a response without Content-Length: ${head}`);
    const size = Number(match[1]);
    if (this.buf.length < end + 4 + size) return;
    const body = this.buf.subarray(end + 4, end + 4 + size);
    const rest = this.buf.subarray(end + 4 + size);
    this.buf = rest.length ? Buffer.from(rest) : null;
    const pending = this.pending;
    this.pending = null;
    const status = Number(head.slice(9, 12));
    if (pending) pending.resolve({ status: status, body: body });
  }

  request(raw) {
    return new Promise((resolve, reject) => {
      this.pending = { resolve: resolve, reject: reject };
      this.socket.write(raw);
    });
  }

  close() {
    this.closed = true;
    this.pending = null;
    if (this.socket) this.socket.destroy();
  }
}

function jsonPost(path, port, messages) {
  const body = Buffer.from(JSON.stringify(messages));
  return Buffer.concat([
    Buffer.from(
      `POST ${path} HTTP/1.1\r\nHost: ${HOST}:${port}\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${body.length}\r\n\r\n`
    ),
    body,
  ]);
}

// 3: N long-polling subscribers (each one keep-alive connection holding its
// /meta/connect), a WebSocket publisher, M messages as fast as acknowledged.
async function longpoll() {
  const n = options.subscribers;
  const m = options.messages;
  const { port, path } = options;
  let delivered = 0;
  let replies = 0;
  let stopped = false;
  const setup = async () => {
    const http = await new RawHttp(port).open();
    const call = async (message) => {
      const response = await http.request(jsonPost(path, port, [message]));
      if (response.status !== 200) throw new Error(`HTTP ${response.status}`);
      return JSON.parse(response.body.toString('utf8'));
    };
    const [hs] = await call({
      channel: '/meta/handshake',
      version: '1.0',
      supportedConnectionTypes: ['long-polling'],
      id: '1',
    });
    if (!hs.successful) throw new Error(`handshake refused: ${JSON.stringify(hs)}`);
    const clientId = hs.clientId;
    const [sub] = await call({
      channel: '/meta/subscribe',
      clientId: clientId,
      subscription: '/bench/longpoll',
      id: '2',
    });
    if (!sub.successful) throw new Error(`subscribe refused: ${JSON.stringify(sub)}`);
    const connect = jsonPost(path, port, [
      { channel: '/meta/connect', clientId: clientId, connectionType: 'long-polling' },
    ]);
    // The connect loop: each reply is counted, then the next connect goes out.
    const loop = () => {
      if (stopped || http.closed) return;
      http.request(connect).then(
        (response) => {
          if (response.status !== 200) throw new Error(`connect: HTTP ${response.status}`);
          if (response.body.indexOf(META_CONNECT) === -1) throw new Error('no connect reply');
          replies += 1;
          delivered += countOf(response.body, SEQ);
          loop();
        },
        (error) => {
          if (!stopped) fail(error);
        }
      );
    };
    loop();
    return { http: http, clientId: clientId };
  };
  const subscribers = await pool(n, options.concurrency, setup);
  const publisher = await new WsSession().open(port, path);
  const channelOf = () => '/bench/longpoll';
  const data = (i) => ({ seq: i, t: now(), pad: PAD });
  await sleep(200); // every first connect is answered or held by now
  await publishAll(publisher, 5, channelOf, options.window, data, options.deadline);
  await until(() => delivered >= 5 * n, options.deadline, 'warm-up deliveries');
  delivered = 0;
  replies = 0;
  await sleep(200);

  const meter = new Meter();
  const acks = await publishAll(publisher, m, channelOf, options.window, data, options.deadline);
  const expected = m * n;
  await until(() => delivered >= expected, options.deadline, `deliveries (${delivered}/${expected})`, 1);
  const result = meter.finish({
    subscribers: n,
    messages: m,
    deliveries: delivered,
    expected: expected,
    connect_replies: replies,
    publish_failures: acks.failed,
  });
  result.deliveries_per_s = delivered / result.seconds;
  result.deliveries_per_cpu_s = result.server_cpu > 0 ? delivered / result.server_cpu : null;
  stopped = true;
  publisher.disconnect();
  await sleep(100);
  publisher.close();
  for (const s of subscribers) s.http.close();
  return result;
}

// 5: idle WebSocket clients, handshaken, connected and subscribed, added up
// to each count of options.steps (default [options.subscribers]), at most
// options.idleConcurrency being set up at once; at each step, the connect
// rate and the server's CPU time for it, then after options.settle seconds
// of idling the server's RSS growth per connection since the start and its
// CPU use while idle (the clients' /meta/connect cycles: each client's
// connect is answered at the server's timeout and sent again).
async function idle() {
  const steps = options.steps || [options.subscribers];
  const concurrency = options.idleConcurrency || options.concurrency;
  await sleep(500);
  const meter = new Meter();
  const before = meter.server0;
  const clients = [];
  const results = [];
  let timer = null;
  const deadline = new Promise((resolve, reject) => {
    timer = setTimeout(
      () => reject(new Error(`connecting took over ${options.deadline} s`)),
      options.deadline * 1000
    );
  });
  for (const target of steps) {
    const from = clients.length;
    const t0 = now();
    const cpu0 = serverStat().cpu;
    const added = await Promise.race([
      pool(target - from, concurrency, async (i) => {
        const session = await new WsSession().open(options.port, options.path);
        await session.subscribe(`/bench/idle/${(from + i) % 100}`);
        return session;
      }),
      deadline,
    ]);
    clients.push(...added);
    const seconds = (now() - t0) / 1000;
    const cpu1 = serverStat().cpu;
    const t1 = now();
    await sleep(options.settle * 1000);
    const stat = serverStat();
    const idleSeconds = (now() - t1) / 1000;
    results.push({
      connections: target,
      seconds: seconds,
      connects_per_s: (target - from) / seconds,
      server_cpu_connecting: cpu1 - cpu0,
      server_cpu_ms_per_connect: (1000 * (cpu1 - cpu0)) / (target - from),
      server_cpu_idle_percent: (100 * (stat.cpu - cpu1)) / idleSeconds,
      server_rss: stat.rss,
      rss_per_connection: (stat.rss - before.rss) / target,
    });
  }
  clearTimeout(timer);
  const result = meter.finish({ server_rss_before: before.rss, steps: results });
  for (const client of clients) client.close();
  return result;
}

// 6: form-encoded message= POSTs over keep-alive connections, closed loop,
// for options.seconds (at most options.requests requests).
async function httppub() {
  const { port, path } = options;
  const message = JSON.stringify([{ channel: '/bench/http', data: { text: 'hello', n: 1 } }]);
  const body = Buffer.from('message=' + encodeURIComponent(message));
  const raw = Buffer.concat([
    Buffer.from(
      `POST ${path} HTTP/1.1\r\nHost: ${HOST}:${port}\r\n` +
        'Content-Type: application/x-www-form-urlencoded\r\n' +
        `Content-Length: ${body.length}\r\n\r\n`
    ),
    body,
  ]);
  const limit = options.requests || 1000000;
  const conns = await pool(options.connections, options.connections, () =>
    new RawHttp(port).open()
  );
  const samples = [];
  let done = 0;
  let failures = 0;
  let issued = 0;
  let measuring = false;
  let stopAt = 0;
  const loop = async (http) => {
    while (true) {
      if (measuring && (now() >= stopAt || issued >= limit)) return;
      if (!measuring && issued >= 200) return;
      issued += 1;
      const t = now();
      const response = await http.request(raw);
      if (response.status !== 200 || response.body.indexOf('"successful":true') === -1) {
        failures += 1;
      }
      if (measuring) {
        samples.push(now() - t);
        done += 1;
      }
    }
  };
  await Promise.all(conns.map(loop)); // warm-up: 200 requests
  issued = 0;
  failures = 0;
  measuring = true;
  const meter = new Meter();
  stopAt = now() + options.seconds * 1000;
  await Promise.all(conns.map(loop));
  const result = meter.finish(
    Object.assign({ connections: options.connections, requests: done, failures: failures },
      latencyStats(samples))
  );
  result.publishes_per_s = done / result.seconds;
  result.publishes_per_cpu_s = result.server_cpu > 0 ? done / result.server_cpu : null;
  for (const http of conns) http.close();
  return result;
}

// 7: ping-pong: A publishes to /bench/ping, B (subscribed) publishes the same
// sequence number to /bench/pong, A (subscribed) gets it: one round trip.
async function pingpong() {
  let onPong = null;
  let b = null;
  const a = await new WsSession((payload) => {
    for (const message of JSON.parse(payload.toString('utf8'))) {
      if (message.channel === '/bench/pong' && onPong) onPong(message.data.seq);
    }
  }).open(options.port, options.path);
  b = await new WsSession((payload) => {
    for (const message of JSON.parse(payload.toString('utf8'))) {
      if (message.channel === '/bench/ping') {
        b.publish('/bench/pong', { seq: message.data.seq }, () => {});
      }
    }
  }).open(options.port, options.path);
  await a.subscribe('/bench/pong');
  await b.subscribe('/bench/ping');
  const result = await timedPingPong(
    (seq) => a.publish('/bench/ping', { seq: seq }, () => {}),
    (handler) => {
      onPong = handler;
    }
  );
  endSessions([a, b]);
  await closeAll([a, b]);
  return result;
}

// ------------------------------------------------- the npm faye client

function fayeClient() {
  const faye = require('faye');
  const client = new faye.Client(`http://${HOST}:${options.port}${options.path}`, {
    timeout: 25,
    retry: 1,
  });
  client.disable('autodisconnect');
  return client;
}

async function fayeFanout() {
  const n = options.subscribers;
  const m = options.messages;
  let delivered = 0;
  // A faye.Client is a thenable: keep it out of promise resolutions.
  const boxes = await pool(n, options.concurrency, async () => {
    const client = fayeClient();
    await client.subscribe('/bench/fanout', () => {
      delivered += 1;
    });
    return { client: client };
  });
  const clients = boxes.map((box) => box.client);
  const publisher = fayeClient();
  await new Promise((resolve) => publisher.connect(resolve));
  await until(() => clients.every((c) => c._dispatcher.connectionType === 'websocket'), 30,
    'faye clients on websocket');
  const publishAllFaye = async (count) => {
    let sent = 0;
    const inflight = new Set();
    while (sent < count) {
      const p = publisher.publish('/bench/fanout', { seq: sent, t: now(), pad: PAD });
      sent += 1;
      inflight.add(p);
      p.then(() => inflight.delete(p));
      if (inflight.size >= options.window) await Promise.race(inflight);
    }
    await Promise.all(inflight);
  };
  await publishAllFaye(5);
  await until(() => delivered >= 5 * n, options.deadline, 'warm-up deliveries');
  delivered = 0;
  await sleep(200);
  const meter = new Meter();
  await publishAllFaye(m);
  const expected = m * n;
  await until(() => delivered >= expected, options.deadline, `deliveries (${delivered}/${expected})`, 1);
  const result = meter.finish({ subscribers: n, messages: m, deliveries: delivered, expected: expected });
  result.deliveries_per_s = delivered / result.seconds;
  result.deliveries_per_cpu_s = result.server_cpu > 0 ? delivered / result.server_cpu : null;
  for (const client of [...clients, publisher]) client.disconnect();
  await sleep(300);
  return result;
}

// Ping-pong rounds, one at a time: 100 unrecorded, then options.roundtrips
// timed. ping(seq) publishes; setOnPong(handler) installs what a pong calls.
async function timedPingPong(ping, setOnPong) {
  const total = options.roundtrips;
  const samples = [];
  const run = (count, record) =>
    new Promise((resolve, reject) => {
      let seq = 0;
      let sentAt = 0;
      const timer = setTimeout(
        () => reject(new Error(`ping-pong timed out at ${seq}/${count}`)),
        options.deadline * 1000
      );
      const send = () => {
        sentAt = now();
        ping(seq);
      };
      setOnPong((got) => {
        if (got !== seq) return;
        if (record) samples.push(now() - sentAt);
        seq += 1;
        if (seq >= count) {
          clearTimeout(timer);
          resolve();
        } else {
          send();
        }
      });
      send();
    });
  await run(100, false);
  const meter = new Meter();
  await run(total, true);
  const result = meter.finish(Object.assign({ roundtrips: total }, latencyStats(samples)));
  result.roundtrips_per_s = total / result.seconds;
  return result;
}

async function fayePingpong() {
  const a = fayeClient();
  const b = fayeClient();
  let onPong = null;
  await a.subscribe('/bench/pong', (data) => onPong && onPong(data.seq));
  await b.subscribe('/bench/ping', (data) => {
    b.publish('/bench/pong', { seq: data.seq });
  });
  await until(() => [a, b].every((c) => c._dispatcher.connectionType === 'websocket'), 30,
    'faye clients on websocket');
  const result = await timedPingPong(
    (seq) => a.publish('/bench/ping', { seq: seq }),
    (handler) => {
      onPong = handler;
    }
  );
  a.disconnect();
  b.disconnect();
  await sleep(300);
  return result;
}

// ----------------------------------------------------------------- main

const SCENARIOS = {
  raw: {
    fanout: () => fanout(false),
    channels: () => fanout(true),
    rate: rate,
    longpoll: longpoll,
    idle: idle,
    httppub: httppub,
    pingpong: pingpong,
  },
  faye: { fanout: fayeFanout, pingpong: fayePingpong },
};

async function main() {
  const table = SCENARIOS[options.client];
  const scenario = table && table[options.scenario];
  if (!scenario) throw new Error(`no scenario ${options.scenario} for client ${options.client}`);
  const guard = setTimeout(
    () => fail(new Error('the whole run took too long')),
    (options.setupDeadline + 2 * options.deadline + 30) * 1000
  );
  const result = await scenario();
  clearTimeout(guard);
  emit('result', Object.assign({ scenario: options.scenario, client: options.client }, result));
  emit('done');
  process.exit(0);
}

main().catch(fail);
