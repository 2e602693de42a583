// A stock Faye 1.4.3 Node.js server with the usual token-checking extension
// (faye.jcoglan.com/security/authentication.html), for the Python client's
// interop tests.
// Usage: node faye_auth_server.js <mount> <timeout seconds>
// Listens on a free loopback port and prints one JSON line: {"event":"listening","port":N}.
//
// Channels under /private/ need ext.authToken === 'let-me-in' to subscribe or
// to publish; otherwise the message is refused with the error
// 'Invalid auth token'. The token is removed before a publish is delivered.
'use strict';

const http = require('http');
const faye = require('faye');

const mount = process.argv[2] || '/faye';
const timeout = Number(process.argv[3] || 25);
const TOKEN = 'let-me-in';

const isPrivate = (channel) => typeof channel === 'string' && channel.indexOf('/private/') === 0;

const bayeux = new faye.NodeAdapter({ mount: mount, timeout: timeout });
bayeux.addExtension({
  incoming: function (message, callback) {
    const target = message.channel === '/meta/subscribe' ? message.subscription : message.channel;
    if (isPrivate(target)) {
      const token = message.ext && message.ext.authToken;
      if (token !== TOKEN) message.error = 'Invalid auth token';
      else if (message.channel !== '/meta/subscribe') delete message.ext.authToken;
    }
    callback(message);
  },
});

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
