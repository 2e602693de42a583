// The chat room demo: every room is a channel, /chat/<room>. Joining a room
// subscribes to it; the page stays subscribed to every room it has joined
// and counts unread messages in the others; sending publishes to the room
// on screen. Everything goes through Faye's browser API (Faye.Client).
//
// Presence: the page shows who is in the room on screen, live. The server
// (`make run`: --presence '/chat/**' and the extension
// examples/chat_presence.py) learns who the page is from the name it sends
// in its handshake, so the page asks for the name before it connects; two
// tabs with the same name are one person.
//
// Query parameters, all optional:
//   ?name=alice       the name (else the one last used here, else asked for)
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
  var NAME_KEY = 'bayeux-chat-name';

  var params = new URLSearchParams(location.search);
  var client = new Faye.Client(params.get('endpoint') || '/faye');
  // ?transport=NAME: disable the transports the client would prefer to it.
  var preferred = TRANSPORTS.indexOf(params.get('transport'));
  TRANSPORTS.slice(0, Math.max(preferred, 0)).forEach(function (type) { client.disable(type); });

  var $ = function (id) { return document.getElementById(id); };
  var rooms = new Map(); // room -> {subscription, presence, item, history, unread}
  var current = null;
  var me = null; // the name the page goes by, once known

  // ------------------------------------------------------------------ name

  // The server names the page's user from ext.name in the handshake
  // (examples/chat_presence.py): "Alice" is the user "alice".
  client.addExtension({
    outgoing: function (message, callback) {
      if (message.channel === '/meta/handshake' && me) {
        message.ext = Object.assign({}, message.ext, {name: me});
      }
      callback(message);
    }
  });

  function cleanName(text) {
    return String(text || '').trim().replace(/\s+/g, ' ').slice(0, 40);
  }

  function remembered() {
    try {
      return localStorage.getItem(NAME_KEY) || '';
    } catch (error) {
      return ''; // storage disabled
    }
  }

  // Join the rooms under `name`: the first subscribe makes the handshake.
  // The name stays for the page's life (reload with ?name= to change it).
  function start(name) {
    if (me || !cleanName(name)) return;
    me = cleanName(name);
    try {
      localStorage.setItem(NAME_KEY, me);
    } catch (error) { /* storage disabled */ }
    $('name').value = me;
    $('name').readOnly = true;
    $('name').title = 'reload the page to change your name';
    showStatus();
    DEFAULT_ROOMS.forEach(function (room) { join(room); });
    join(roomName(params.get('room') || '') || DEFAULT_ROOMS[0]);
  }

  $('name').addEventListener('change', function () { start($('name').value); });

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
    if (!me) {
      status.dataset.state = 'connecting';
      status.textContent = 'type your name to join';
      return;
    }
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

    var entry = {item: item, history: [], unread: 0, subscription: null, seen: new Set(),
                 presence: null};
    rooms.set(room, entry);
    entry.presence = follow(room);
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

  // Who is in the room: a members list, then joins and leaves, on
  // /presence/chat/<room>. Our client has presence(); with Faye's own bundle
  // the page reads the same deliveries from a plain subscription.
  function follow(room) {
    var channel = '/chat/' + room;
    var update = function () { if (room === current) renderPeople(); };
    if (typeof client.presence === 'function') {
      var presence = client.presence(channel);
      var listed = false;
      presence.on('members', function () { listed = true; update(); });
      presence.on('join', update);
      presence.on('leave', update);
      presence.then(null, function () { /* no presence on this server: nothing shown */ });
      return {
        known: function () { return listed; },
        members: function () { return presence.members(); },
        cancel: function () { presence.cancel(); }
      };
    }
    var members = null; // user -> info, once listed
    var subscription = client.subscribe('/presence' + channel, function (data) {
      if (data && Array.isArray(data.members)) {
        members = new Map();
        data.members.forEach(function (member) { members.set(member.user, member.info); });
      } else if (members && data && data.join) {
        members.set(data.join.user, data.join.info);
      } else if (members && data && data.leave) {
        members.delete(data.leave.user);
      }
      update();
    });
    subscription.then(null, function () { /* no presence on this server */ });
    return {
      known: function () { return members !== null; },
      members: function () {
        var list = [];
        if (members) members.forEach(function (info, user) { list.push({user: user, info: info}); });
        return list;
      },
      cancel: function () { subscription.cancel(); }
    };
  }

  // The people in the room on screen; the panel shows once a list came.
  function renderPeople() {
    var entry = current && rooms.get(current);
    var panel = $('presence');
    var people = $('people');
    people.textContent = '';
    if (!entry || !entry.presence.known()) {
      panel.hidden = true;
      return;
    }
    var members = entry.presence.members();
    var mine = me ? me.toLowerCase() : null;
    members.forEach(function (member) {
      var li = document.createElement('li');
      var info = member.info;
      var shown = info && typeof info.name === 'string' ? info.name : 'guest';
      li.dataset.user = member.user;
      li.textContent = shown;
      if (member.user === mine) {
        li.className = 'me';
        li.textContent = shown + ' (you)';
      }
      people.appendChild(li);
    });
    $('people-count').textContent = '(' + members.length + ')';
    panel.hidden = false;
  }

  function leave(room) {
    var entry = rooms.get(room);
    if (!entry) return;
    entry.subscription.cancel();
    entry.presence.cancel();
    entry.item.remove();
    rooms.delete(room);
    if (current === room) {
      current = null;
      var next = rooms.keys().next();
      if (!next.done) show(next.value);
      else {
        render();
        renderPeople();
      }
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
    renderPeople();
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
    start($('name').value);
    var name = me;
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

  var known = cleanName(params.get('name') || remembered());
  if (known) {
    start(known);
  } else {
    showStatus();
    $('name').focus();
  }
})();
