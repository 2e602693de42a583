// Helpers for tests/browser/test_client_api.py, which drives this page with
// page.evaluate(). Every wait is bounded.
(function () {
  'use strict';

  // Resolves once predicate() is true; rejects after `ms`.
  window.until = function (predicate, ms, what) {
    var deadline = Date.now() + (ms || 10000);
    return new Promise(function (resolve, reject) {
      (function check() {
        if (predicate()) return resolve(true);
        if (Date.now() > deadline) return reject(new Error('gave up waiting for ' + (what || predicate)));
        setTimeout(check, 20);
      })();
    });
  };

  // The outcome of a thenable as plain data: {ok: true} or {ok: false, error}.
  window.outcome = function (thenable) {
    return new Promise(function (resolve) {
      thenable.then(function () { resolve({ok: true}); }, function (error) {
        resolve({ok: false, error: {
          code: error.code, params: error.params, message: error.message, text: String(error)
        }});
      });
    });
  };

  // Records every message a client sends and receives, through an extension.
  window.record = function (client) {
    var log = {sent: [], received: []};
    client.addExtension({
      outgoing: function (message, callback) { log.sent.push(JSON.parse(JSON.stringify(message))); callback(message); },
      incoming: function (message, callback) { log.received.push(JSON.parse(JSON.stringify(message))); callback(message); }
    });
    log.count = function (channel, subscription) {
      return log.sent.filter(function (m) {
        return m.channel === channel && (subscription === undefined || m.subscription === subscription);
      }).length;
    };
    return log;
  };
})();
