// The chat room demo: every room is a channel, /chat/<room>. Joining a room
// subscribes to it; the page stays subscribed to every room it has joined
// and counts unread messages in the others; sending publishes to the room
// on screen. Everything goes through Faye's browser API (Faye.Client).
//
// Query parameters, all optional:
//   ?name=alice       fill in the name
//   ?room=python      the room to show first (default: lobby)
//   ?endpoint=URL     the Bayeux endpoint (default: /faye on this server)
//   ?transport=NAME   prefer this transport: websocket, eventsource,
//                     long-polling, cross-origin-long-polling or callback-polling
//                     (those the client would choose first are disabled)
(function () {
  'use strict';

  var TRANSPORTS = ['websocket', 'eventsource', 'long-polling',
                    'cross-origin-long-polling', 'callback-polling'];
  var DEFAULT_ROOMS = ['lobby', 'random', 'python'];

  var params = new URLSearchParams(location.search);
  var client = new Faye.Client(params.get('endpoint') || '/faye');
  // ?transport=NAME: disable the transports the client would prefer to it.
  var preferred = TRANSPORTS.indexOf(params.get('transport'));
  TRANSPORTS.slice(0, Math.max(preferred, 0)).forEach(function (type) { client.disable(type); });

  var $ = function (id) { return document.getElementById(id); };
  var rooms = new Map(); // room -> {subscription, item, history, unread}
  var current = null;

  if (params.get('name')) $('name').value = params.get('name');

  // ------------------------------------------------------------ connection

  // "online" once the link works AND the page is subscribed to its rooms:
  // after a server restart the link comes back first ('transport:up'), then
  // the client shakes hands and subscribes again ('session:up'). Faye's own
  // bundle has no session events: there the link alone decides.
  var status = $('status');
  var link = null; // null: not known yet, then true (up) or false (down)
  var session = Faye.implementation !== 'bayeux-trio';
  client.bind('transport:up', function () { link = true; showStatus(); });
  client.bind('transport:down', function () { link = false; showStatus(); });
  client.bind('session:down', function () { session = false; showStatus(); });
  client.bind('session:up', function () { session = true; showStatus(); });

  function showStatus() {
    var state = link === false ? 'offline' : link && session ? 'online' : 'connecting';
    status.dataset.state = state;
    status.textContent = {
      offline: 'offline, reconnecting…',
      online: 'online',
      connecting: link ? 'joining rooms again…' : 'connecting…'
    }[state];
  }

  // ---------------------------------------------------------------- history

  // `make run` keeps the latest messages of each room (bayeux serve
  // --history '/chat/*=100'). After the server lost the page's session, the
  // client subscribes again from the last position it saw, and the server
  // replays what was missed. A restarted server has new streams ('epoch
  // changed'): what it has was all published after the restart, which the
  // page missed, so the page subscribes once more from the new stream's start.
  // Copies (a message that came live in between) are dropped by position.
  client.bind('history:recovery', function (channel, recovered, reason) {
    var room = channel.slice('/chat/'.length);
    var entry = rooms.get(room);
    if (!entry || recovered) return;
    var position = client.getPosition(channel) || '';
    var at = position.lastIndexOf(':');
    if (reason === 'epoch changed' && at > 0) {
      if (position.slice(at + 1) === '0') return; // nothing published since
      entry.subscription.cancel();
      client.setPosition(channel, position.slice(0, at) + ':0');
      listen(room, entry);
      return;
    }
    note(room, 'messages sent while you were away are lost (' + reason + ')');
  });

  // ----------------------------------------------------------------- rooms

  // A room name must be a channel segment: letters, digits, - and _.
  function roomName(text) {
    return text.trim().toLowerCase().replace(/[^a-z0-9_-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 40);
  }

  function join(room) {
    if (rooms.has(room)) return show(room);
    var item = document.createElement('li');
    item.dataset.room = room;
    item.dataset.state = 'joining';
    item.innerHTML = '<span class="name"></span><span class="unread"></span>' +
                     '<button class="leave" type="button" title="leave">×</button>';
    item.querySelector('.name').textContent = '#' + room;
    item.addEventListener('click', function () { show(room); });
    item.querySelector('.leave').addEventListener('click', function (event) {
      event.stopPropagation();
      leave(room);
    });
    $('rooms').appendChild(item);

    var entry = {item: item, history: [], unread: 0, subscription: null, seen: new Set()};
    rooms.set(room, entry);
    listen(room, entry).then(function () {
      item.dataset.state = 'joined';
      note(room, 'you joined #' + room);
    }, function (error) {
      item.dataset.state = 'refused';
      note(room, 'could not join #' + room + ': ' + error.message);
    });
    show(room);
  }

  // Subscribes to the room; each message is shown once (by its history
  // position, when the server keeps history).
  function listen(room, entry) {
    var channel = '/chat/' + room;
    entry.subscription = client.subscribe(channel, function (message) {
      var position = client.getPosition ? client.getPosition(channel) : undefined;
      if (position !== undefined) {
        if (entry.seen.has(position)) return;
        entry.seen.add(position);
      }
      receive(room, message);
    });
    return entry.subscription;
  }

  function leave(room) {
    var entry = rooms.get(room);
    if (!entry) return;
    entry.subscription.cancel();
    entry.item.remove();
    rooms.delete(room);
    if (current === room) {
      current = null;
      var next = rooms.keys().next();
      if (!next.done) show(next.value);
      else render();
    }
  }

  function show(room) {
    current = room;
    var entry = rooms.get(room);
    entry.unread = 0;
    rooms.forEach(function (other, name) {
      other.item.setAttribute('aria-current', String(name === room));
      other.item.querySelector('.unread').textContent = other.unread || '';
    });
    render();
    $('message').focus();
  }

  // -------------------------------------------------------------- messages

  function receive(room, message) {
    if (!message || typeof message.text !== 'string') return;
    add(room, {name: String(message.name || 'someone'), text: message.text, at: new Date()});
  }

  function note(room, text) {
    add(room, {system: true, text: text, at: new Date()});
  }

  function add(room, line) {
    var entry = rooms.get(room);
    if (!entry) return;
    entry.history.push(line);
    if (room === current) {
      $('messages').appendChild(lineElement(line));
      $('messages').scrollTop = $('messages').scrollHeight;
    } else if (!line.system) {
      entry.unread += 1;
      entry.item.querySelector('.unread').textContent = entry.unread;
    }
  }

  function render() {
    var list = $('messages');
    list.textContent = '';
    $('room-title').textContent = current ? '#' + current : 'no room';
    if (!current) return;
    rooms.get(current).history.forEach(function (line) { list.appendChild(lineElement(line)); });
    list.scrollTop = list.scrollHeight;
  }

  function lineElement(line) {
    var li = document.createElement('li');
    var time = document.createElement('time');
    time.textContent = line.at.toLocaleTimeString([], {hour: '2-digit', minute: '2-digit'});
    li.appendChild(time);
    if (line.system) {
      li.className = 'system';
      li.appendChild(document.createTextNode(line.text));
      return li;
    }
    if (line.name === $('name').value.trim()) li.className = 'mine';
    var who = document.createElement('span');
    who.className = 'who';
    who.textContent = line.name;
    li.appendChild(who);
    li.appendChild(document.createTextNode(line.text));
    return li;
  }

  // ----------------------------------------------------------------- forms

  $('compose').addEventListener('submit', function (event) {
    event.preventDefault();
    var name = $('name').value.trim();
    var text = $('message').value.trim();
    if (!name || !text || !current) return;
    var room = current;
    $('message').value = '';
    client.publish('/chat/' + room, {name: name, text: text}).then(null, function (error) {
      note(room, 'not sent: ' + error.message);
    });
  });

  $('join-form').addEventListener('submit', function (event) {
    event.preventDefault();
    var room = roomName($('room').value);
    $('room').value = '';
    if (room) join(room);
  });

  DEFAULT_ROOMS.forEach(function (room) { join(room); });
  join(roomName(params.get('room') || '') || DEFAULT_ROOMS[0]);
})();
