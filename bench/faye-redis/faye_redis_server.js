// Faye 1.4.3 on Redis (the faye-redis 0.2.0 engine), for bench/redis_bench.py.
//
// Usage: node faye_redis_server.js <mount> <timeout seconds>
// Environment: BENCH_REDIS_PORT (Redis on 127.0.0.1), BENCH_REDIS_DB,
// BENCH_WORKERS (processes sharing the port through Node's cluster module,
// default 1). Listens on a free loopback port and prints one JSON line:
// {"event":"listening","port":N} (the same interface as
// tests/interop/js/faye_server.js); exits when stdin closes or on SIGTERM.
'use strict';

const cluster = require('cluster');
const http = require('http');

const mount = process.argv[2] || '/faye';
const timeout = Number(process.argv[3] || 25);
const workers = Number(process.env.BENCH_WORKERS || 1);

function serve(onListening) {
  const faye = require('faye');
  const engine = require('faye-redis');
  const bayeux = new faye.NodeAdapter({
    mount: mount,
    timeout: timeout,
    engine: {
      type: engine,
      host: '127.0.0.1',
      port: Number(process.env.BENCH_REDIS_PORT || 6379),
      database: Number(process.env.BENCH_REDIS_DB || 0),
    },
  });
  const server = http.createServer((request, response) => {
    response.writeHead(404, { 'Content-Type': 'text/plain' });
    response.end('Not found');
  });
  bayeux.attach(server);
  // In a cluster worker, port 0 is one port shared by every worker.
  server.listen(0, '127.0.0.1', () => onListening(server.address().port));
  return server;
}

function announce(port) {
  process.stdout.write(JSON.stringify({ event: 'listening', port: port }) + '\n');
}

if (workers <= 1) {
  const server = serve(announce);
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
} else if (cluster.isPrimary) {
  let ready = 0;
  for (let i = 0; i < workers; i++) {
    cluster.fork().on('message', (message) => {
      ready += 1;
      if (ready === workers) announce(message.port);
    });
  }
  const stop = () => {
    for (const id in cluster.workers) cluster.workers[id].kill('SIGTERM');
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdin.on('end', stop);
  process.stdin.resume();
} else {
  serve((port) => process.send({ port: port }));
  process.on('SIGTERM', () => process.exit(0));
}
