// The broadcast demo: the page only listens. A backend publishes to
// /notifications (curl, `bayeux publish`, Python) and every open page shows
// it at the top of the list. A notification is a string, or an object
// {text, level} with level "info", "warning" or "alert".
//
// Query parameters, all optional: ?endpoint=URL and ?transport=NAME as in
// the chat demo.
(function () {
  'use strict';

  var TRANSPORTS = ['websocket', 'eventsource', 'long-polling',
                    'cross-origin-long-polling', 'callback-polling'];
  var LEVELS = ['info', 'warning', 'alert'];

  var params = new URLSearchParams(location.search);
  // The endpoint as an absolute URL: what the commands below must be given.
  var endpoint = new URL(params.get('endpoint') || '/faye', location.href).href;
  var client = new Faye.Client(endpoint);
  // ?transport=NAME: disable the transports the client would prefer to it.
  var preferred = TRANSPORTS.indexOf(params.get('transport'));
  TRANSPORTS.slice(0, Math.max(preferred, 0)).forEach(function (type) { client.disable(type); });

  var feed = document.getElementById('feed');
  var listening = document.getElementById('listening');
  var status = document.getElementById('status');

  client.bind('transport:up', function () {
    status.dataset.state = 'online';
    status.textContent = 'online';
  });
  client.bind('transport:down', function () {
    status.dataset.state = 'offline';
    status.textContent = 'offline, reconnecting…';
  });

  showCommands(endpoint);

  client.subscribe('/notifications', show).then(function () {
    listening.dataset.state = 'listening';
    listening.textContent = 'Listening on /notifications.';
  }, function (error) {
    listening.dataset.state = 'refused';
    listening.textContent = 'Could not subscribe: ' + error.message;
  });

  // "Send one": commands that work as printed, with this server's endpoint
  // (the page's own URL, or ?endpoint=), quoted for a POSIX shell.
  function showCommands(url) {
    var message = JSON.stringify({channel: '/notifications', data: 'Deploy finished'});
    var commands = {
      curl: ['curl', url, '-d', 'message=' + message],
      bayeux: ['.venv/bin/bayeux', 'publish', url, '/notifications', '"Deploy finished"'],
      python: ['.venv/bin/python', 'examples/broadcast/notify.py', '--url', url, 'Deploy finished']
    };
    document.querySelectorAll('#send .command').forEach(function (code) {
      code.textContent = commands[code.dataset.tool].map(shellQuote).join(' ');
    });
  }

  function shellQuote(word) {
    if (/^[A-Za-z0-9_.,:\/@%+=-]+$/.test(word)) return word;
    if (!/["'\\$`!]/.test(word)) return '"' + word + '"';
    return "'" + word.replace(/'/g, "'\\''") + "'";
  }

  function show(data) {
    var text = typeof data === 'string' ? data : (data && data.text);
    if (typeof text !== 'string') text = JSON.stringify(data);
    var level = data && LEVELS.indexOf(data.level) >= 0 ? data.level : 'info';
    var li = document.createElement('li');
    li.dataset.level = level;
    var time = document.createElement('time');
    time.textContent = new Date().toLocaleTimeString();
    li.appendChild(time);
    li.appendChild(document.createTextNode(text));
    feed.insertBefore(li, feed.firstChild);
  }
})();
