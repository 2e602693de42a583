// The private chat demo. Two users talk on /private/<a>/<b> (names in
// alphabetical order). A client extension adds the signed-in user's token to
// every subscribe and publish as ext.authToken; the server's extension
// (examples/private_chat/auth.py) lets the subscription through only for two
// users who follow each other, and refuses it otherwise with
// "Invalid subscription auth token", which this page shows.
//
// Signing in subscribes to the user's own channel /private/<name>, which the
// extension admits only with that user's token: a wrong token is said at
// once, not at the first conversation.
//
// Query parameters, all optional: ?name=alice&token=...&friend=bob signs in
// and opens the conversation; ?endpoint=URL and ?transport=NAME as in the
// chat demo.
(function () {
  'use strict';

  var TRANSPORTS = ['websocket', 'eventsource', 'long-polling',
                    'cross-origin-long-polling', 'callback-polling'];

  var params = new URLSearchParams(location.search);
  var client = new Faye.Client(params.get('endpoint') || '/faye');
  // ?transport=NAME: disable the transports the client would prefer to it.
  var preferred = TRANSPORTS.indexOf(params.get('transport'));
  TRANSPORTS.slice(0, Math.max(preferred, 0)).forEach(function (type) { client.disable(type); });

  var $ = function (id) { return document.getElementById(id); };
  var me = null;
  var token = null;
  var talk = null; // {channel, friend, subscription}
  var own = null; // the subscription to /private/<me> that checked the token

  // The usual Faye recipe: credentials travel in ext, on the messages that need them.
  client.addExtension({
    outgoing: function (message, callback) {
      var channel = message.channel;
      var guarded = channel === '/meta/subscribe' || channel.indexOf('/private/') === 0;
      if (guarded && token) {
        message.ext = message.ext || {};
        message.ext.authToken = token;
      }
      callback(message);
    }
  });

  client.bind('transport:up', function () { showStatus('online', 'online'); });
  client.bind('transport:down', function () { showStatus('offline', 'offline, reconnecting…'); });

  function showStatus(state, text) {
    $('status').dataset.state = state;
    $('status').textContent = text;
  }

  function userName(text) {
    return text.trim().toLowerCase().replace(/[^a-z0-9_-]+/g, '');
  }

  function conversation(a, b) {
    return '/private/' + [a, b].sort().join('/');
  }

  // Signing in checks the token at once: the page subscribes to the user's
  // own channel /private/<name>, which the server's extension admits only
  // with that user's token. Returns a thenable settled when the server has
  // answered (rejected when it refused).
  function signIn(name, secret) {
    var user = userName(name);
    if (!user || !secret.trim()) return Promise.reject(new Error('name and token needed'));
    if (own) own.cancel();
    me = user;
    token = secret.trim();
    $('signin').dataset.state = 'checking';
    $('signin-button').disabled = true;
    $('error').hidden = true;
    $('whoami').textContent = 'Checking the token of ' + user + '…';
    $('whoami').hidden = false;
    var subscription = client.subscribe('/private/' + user, function () {});
    own = subscription;
    return subscription.then(function () {
      if (own !== subscription) return;
      $('signin').dataset.state = 'signed-in';
      $('whoami').textContent = 'Signed in as ' + user + '.';
      $('open').hidden = false;
      $('signin').hidden = true;
      $('friend').focus();
    }, function (error) {
      if (own !== subscription) throw error;
      own = null;
      me = token = null;
      $('signin').dataset.state = 'refused';
      $('signin-button').disabled = false;
      $('whoami').hidden = true;
      $('error').textContent = 'Wrong token for ' + user + ': ' + error.message;
      $('error').hidden = false;
      $('token').select();
      throw error;
    });
  }

  function open(friendName) {
    var friend = userName(friendName);
    if (!me || !friend || friend === me) return;
    if (talk) talk.subscription.cancel();
    var channel = conversation(me, friend);
    var subscription = client.subscribe(channel, function (message) {
      if (message && typeof message.text === 'string') add(String(message.from), message.text);
    });
    talk = {channel: channel, friend: friend, subscription: subscription};
    $('error').hidden = true;
    $('messages').textContent = '';
    $('title').textContent = me + ' ↔ ' + friend;
    $('conversation').dataset.state = 'opening';
    $('conversation').hidden = false;

    subscription.then(function () {
      if (!talk || talk.subscription !== subscription) return;
      $('conversation').dataset.state = 'open';
      note('only you and ' + friend + ' can read this conversation');
      $('message').focus();
    }, function (error) {
      if (!talk || talk.subscription !== subscription) return;
      talk = null;
      $('conversation').dataset.state = 'refused';
      $('conversation').hidden = true;
      $('error').textContent = 'Refused: ' + error.message;
      $('error').hidden = false;
    });
  }

  function add(from, text) {
    var li = document.createElement('li');
    if (from === me) li.className = 'mine';
    var who = document.createElement('span');
    who.className = 'who';
    who.textContent = from;
    li.appendChild(who);
    li.appendChild(document.createTextNode(text));
    $('messages').appendChild(li);
    $('messages').scrollTop = $('messages').scrollHeight;
  }

  function note(text) {
    var li = document.createElement('li');
    li.className = 'system';
    li.textContent = text;
    $('messages').appendChild(li);
  }

  $('signin').addEventListener('submit', function (event) {
    event.preventDefault();
    signIn($('me').value, $('token').value).then(null, function () {});
  });

  $('open').addEventListener('submit', function (event) {
    event.preventDefault();
    open($('friend').value);
  });

  $('compose').addEventListener('submit', function (event) {
    event.preventDefault();
    var text = $('message').value.trim();
    if (!text || !talk) return;
    $('message').value = '';
    client.publish(talk.channel, {from: me, text: text}).then(null, function (error) {
      note('not sent: ' + error.message);
    });
  });

  if (params.get('name') && params.get('token')) {
    $('me').value = params.get('name');
    $('token').value = params.get('token');
    signIn(params.get('name'), params.get('token')).then(function () {
      if (params.get('friend')) {
        $('friend').value = params.get('friend');
        open(params.get('friend'));
      }
    }, function () {});
  }
})();
