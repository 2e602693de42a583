// A stock Faye 1.4.3 Node.js server, the reference our server is compared with.
// Usage: node faye_server.js <mount> <timeout seconds>
// Listens on a free loopback port and prints one JSON line: {"event":"listening","port":N}.
'use strict';

const http = require('http');
const faye = require('faye');

const mount = process.argv[2] || '/faye';
const timeout = Number(process.argv[3] || 25);

const bayeux = new faye.NodeAdapter({ mount: mount, timeout: timeout });
const server = http.createServer((request, response) => {
  response.writeHead(404, { 'Content-Type': 'text/plain' });
  response.end('Not found');
});
bayeux.attach(server);
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ event: 'listening', port: server.address().port }) + '\n');
});

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// Die with the test run even if nobody signals us.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
