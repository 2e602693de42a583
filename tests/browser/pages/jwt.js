// Helpers for tests/browser/test_jwt.py (on jwt.html, beside harness.js's).
(function () {
  'use strict';

  // A client with `options` subscribes to `channel`, publishes to it and
  // receives it (if the subscribe succeeded); then disconnects. Returns what
  // the page saw: the subscribe's outcome, the data received, and the ext of
  // the handshake it sent.
  window.subscribeAndReceive = async function (options, channel) {
    var client = new Faye.Client('/faye', Object.assign({retry: 1}, options));
    var log = record(client);
    var got = [];
    var subscribed = await outcome(client.subscribe(channel, function (data) { got.push(data); }));
    if (subscribed.ok) {
      await outcome(client.publish(channel, {n: 1}));
      await until(function () { return got.length === 1; }, 10000, 'the delivery');
    }
    await client.disconnect();
    var handshake = log.sent.filter(function (m) { return m.channel === '/meta/handshake'; })[0];
    return {subscribed: subscribed, got: got, ext: handshake.ext || null};
  };
})();
