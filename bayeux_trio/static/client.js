/*
 * bayeux-trio browser client: Faye's browser API, for any Bayeux server.
 *
 *   <script src="http://localhost:9292/faye/client.js"></script>
 *   <script>
 *     var client = new Faye.Client('http://localhost:9292/faye');
 *     client.subscribe('/messages', function (data) { console.log(data); })
 *       .then(function () { client.publish('/messages', {text: 'hello'}); });
 *   </script>
 *
 * Written for bayeux-trio (MIT licence) after Faye's documented behaviour; no
 * build step, no dependencies, any browser with Promise, URL and WebSocket.
 * docs/browser.md describes the API, the transports and how one is chosen.
 *
 * Layout of this file:
 *   1. small helpers: logging, events, thenables, channel names, errors
 *   2. transports: websocket, eventsource, long-polling,
 *      cross-origin-long-polling, callback-polling (in Faye's order)
 *   3. the dispatcher: one envelope per message, timeouts and retries,
 *      transport selection, transport:up / transport:down
 *   4. Faye.Client: handshake, connect loop, subscriptions (session:down /
 *      session:up around a re-subscription), publishing, presence
 */
(function (global) {
  'use strict';

  // ------------------------------------------------------------ constants

  var API_VERSION = '1.4.3'; // the Faye release whose browser API this follows
  var BAYEUX_VERSION = '1.0';
  var DEFAULT_ENDPOINT = '/bayeux';
  var DEFAULT_TIMEOUT = 60; // seconds, until the server's advice says otherwise
  var DEFAULT_INTERVAL = 0; // seconds between two connects
  var DEFAULT_RETRY = 5; // seconds before a failed message is sent again
  var MAX_REQUEST_SIZE = 2048; // characters in one HTTP batch
  var HANDSHAKE_DELAY = 10; // ms: gives a page time to queue its subscriptions
  // After a handshake, how long the first connect may wait for the preferred
  // transport (a WebSocket or EventSource still opening) before it goes over
  // the handshake's transport.
  var TRANSPORT_WAIT = 2;
  // A handshake must go over one of these: they need no session to work.
  var MANDATORY = ['long-polling', 'callback-polling', 'in-process'];

  var META = {
    handshake: '/meta/handshake',
    connect: '/meta/connect',
    subscribe: '/meta/subscribe',
    unsubscribe: '/meta/unsubscribe',
    disconnect: '/meta/disconnect'
  };

  var UNCONNECTED = 1;
  var CONNECTING = 2;
  var CONNECTED = 3;
  var DISCONNECTED = 4;

  var CLIENT_OPTIONS = ['interval', 'timeout', 'endpoints', 'proxy', 'retry', 'scheduler',
                        'websocketExtensions', 'tls', 'ca', 'ack', 'token', 'tokenField'];
  var PUBLISH_OPTIONS = ['attempts', 'deadline'];
  var PRESENCE_OPTIONS = ['timeout'];
  // Who is in /chat/room is told on /presence/chat/room (docs/browser.md).
  var PRESENCE = '/presence';

  // Bayeux grammar, as Faye applies it.
  var SEGMENT = '[A-Za-z0-9\\-_!~()$@]+';
  var CHANNEL_NAME = new RegExp('^(?:/' + SEGMENT + ')+$');
  var CHANNEL_PATTERN = new RegExp('^(?:/' + SEGMENT + ')*/\\*{1,2}$');
  var ERROR_TEXT = '[A-Za-z0-9\\-_!~()$@ /*.]*';
  var ERROR_FORMAT = new RegExp('^[0-9]{3}:' + ERROR_TEXT + '(?:,' + ERROR_TEXT + ')*:' + ERROR_TEXT + '$');

  var hasOwn = Object.prototype.hasOwnProperty;
  var noop = function () {};
  var unloading = false;

  // -------------------------------------------------------------- helpers

  function checkOptions(options, allowed) {
    Object.keys(options).forEach(function (key) {
      if (allowed.indexOf(key) < 0) throw new Error('Unrecognized option: ' + key);
    });
  }

  function later(fn, seconds) {
    return global.setTimeout(fn, Math.max(0, seconds * 1000));
  }

  // Surface an exception from user code without breaking our own loops.
  function report(error) {
    global.setTimeout(function () { throw error; }, 0);
  }

  function parseJSON(text) {
    try {
      return JSON.parse(text);
    } catch (error) {
      return null;
    }
  }

  function parseURL(url) {
    if (url instanceof URL) return new URL(url.href);
    return new URL(String(url), global.location ? global.location.href : undefined);
  }

  function isSameOrigin(url) {
    var here = global.location;
    return !!here && url.protocol === here.protocol &&
      url.hostname === here.hostname && url.port === here.port;
  }

  // Faye.logger may be a function, or an object with debug/info/warn/error.
  // `text` may be a function, called only when there is a logger.
  function writeLog(level, source, text) {
    var logger = Faye.logger;
    if (!logger) return;
    var line = '[Faye.' + source + '] ' + (typeof text === 'function' ? text() : text);
    if (typeof logger[level] === 'function') logger[level](line);
    else if (typeof logger === 'function') logger(line);
  }

  // 'auth.token' -> ['auth', 'token']: where in `ext` a token goes.
  function extPath(field) {
    var parts = String(field).split('.');
    if (parts.some(function (part) { return !part; })) {
      throw new Error('tokenField must be a dotted path in ext (say \'auth.token\'), not ' + field);
    }
    return parts;
  }

  // A copy of `ext` with `value` at `path`, copying the objects on the way.
  function withExtValue(ext, path, value) {
    var top = Object.assign({}, ext);
    var node = top;
    path.slice(0, -1).forEach(function (key) {
      var child = node[key];
      node[key] = child && typeof child === 'object' && !Array.isArray(child) ? Object.assign({}, child) : {};
      node = node[key];
    });
    node[path[path.length - 1]] = value;
    return top;
  }

  function describe(value) {
    try {
      return JSON.stringify(value);
    } catch (error) {
      return String(value);
    }
  }

  // ---------------------------------------------------------------- events

  // bind/on, unbind/off, trigger/emit: Faye's Publisher methods.
  var Events = {
    bind: function (type, listener, context) {
      var all = this._listeners || (this._listeners = {});
      (all[type] || (all[type] = [])).push({listener: listener, context: context});
      return this;
    },

    unbind: function (type, listener, context) {
      var list = this._listeners && this._listeners[type];
      if (!list) return this;
      this._listeners[type] = list.filter(function (entry) {
        return listener && (entry.listener !== listener || entry.context !== context);
      });
      return this;
    },

    trigger: function (type) {
      var list = this._listeners && this._listeners[type];
      if (!list) return false;
      var args = Array.prototype.slice.call(arguments, 1);
      list.slice().forEach(function (entry) {
        try {
          entry.listener.apply(entry.context, args);
        } catch (error) {
          report(error);
        }
      });
      return list.length > 0;
    },

    listeners: function (type) {
      var list = (this._listeners && this._listeners[type]) || [];
      return list.map(function (entry) { return entry.listener; });
    },

    countListeners: function (type) {
      return this.listeners(type).length;
    }
  };
  Events.on = Events.addListener = Events.bind;
  Events.off = Events.removeListener = function (type, listener) {
    return this.unbind(type, listener);
  };
  Events.emit = Events.trigger;

  // -------------------------------------------------------------- thenables

  // Subscriptions and publications are thenables, settled once by the server's
  // reply. Nobody has to listen: a failure with no handler is not reported as
  // an unhandled rejection.
  var Thenable = {
    _settle: function () {
      if (!this._promise) {
        var self = this;
        this._promise = new Promise(function (resolve, reject) {
          self._resolve = resolve;
          self._reject = reject;
        });
        this._promise.catch(noop);
      }
      return this._promise;
    },

    then: function (onSucceeded, onFailed) {
      return this._settle().then(onSucceeded, onFailed);
    },

    catch: function (onFailed) {
      return this._settle().catch(onFailed);
    },

    callback: function (fn, context) {
      if (fn) this._settle().then(function (value) { fn.call(context, value); }, noop);
      return this;
    },

    errback: function (fn, context) {
      if (fn) this._settle().then(null, function (reason) { fn.call(context, reason); });
      return this;
    },

    timeout: function (seconds, reason) {
      var self = this;
      this._settle();
      this._timer = later(function () { self._fail(reason); }, seconds);
      return this;
    },

    _succeed: function (value) {
      global.clearTimeout(this._timer);
      this._settle();
      this._resolve(value);
    },

    _fail: function (reason) {
      global.clearTimeout(this._timer);
      this._settle();
      this._reject(reason);
    }
  };

  function Publication() {
    this._settle();
  }
  Object.assign(Publication.prototype, Thenable);

  // ---------------------------------------------------------------- errors

  // A server error such as "405:/foo*:Invalid channel". Text outside that
  // grammar (an extension's "Invalid subscription auth token") becomes the
  // message, with no code.
  function BayeuxError(code, params, message) {
    this.code = code;
    this.params = Array.prototype.slice.call(params || []);
    this.message = message;
  }
  BayeuxError.prototype.toString = function () {
    return this.code + ':' + this.params.join(',') + ':' + this.message;
  };
  BayeuxError.parse = function (text) {
    text = text || '';
    if (typeof text !== 'string' || !ERROR_FORMAT.test(text)) {
      return new BayeuxError(null, [], typeof text === 'string' ? text : describe(text));
    }
    var parts = text.split(':');
    return new BayeuxError(parseInt(parts[0], 10), parts[1].split(','), parts[2]);
  };

  // -------------------------------------------------------------- channels

  function isChannelName(name) {
    return typeof name === 'string' && CHANNEL_NAME.test(name);
  }

  // The subscription patterns a message on `name` reaches:
  // /a/b/c -> /**, /a/b/c, /a/b/*, /a/**, /a/b/**
  function expandChannel(name) {
    if (!isChannelName(name)) return [name];
    var segments = name.split('/').slice(1);
    var patterns = ['/**', name];
    patterns.push('/' + segments.slice(0, -1).concat('*').join('/'));
    for (var i = 1; i < segments.length; i++) {
      patterns.push('/' + segments.slice(0, i).concat('**').join('/'));
    }
    return patterns;
  }

  // channel name or pattern -> the subscriptions listening on it
  function ChannelSet() {
    this._channels = new Map();
  }
  ChannelSet.prototype = {
    keys: function () { return Array.from(this._channels.keys()); },

    has: function (name) { return this._channels.has(name); },

    add: function (name, subscription) {
      if (!this._channels.has(name)) this._channels.set(name, []);
      this._channels.get(name).push(subscription);
    },

    // Remove one subscription (or a callback's, or all of them when none is
    // given); true if nobody listens on `name` any more.
    remove: function (name, which) {
      var list = this._channels.get(name);
      if (!list) return false;
      var kept = which ? list.filter(function (s) { return s !== which && s._callback !== which; }) : [];
      if (kept.length > 0) {
        this._channels.set(name, kept);
        return false;
      }
      this._channels.delete(name);
      return true;
    },

    distribute: function (message) {
      var channels = this._channels;
      expandChannel(message.channel).forEach(function (pattern) {
        var list = channels.get(pattern);
        if (!list) return;
        list.slice().forEach(function (subscription) { subscription._deliver(message); });
      });
    }
  };

  // The object subscribe() returns: a thenable (the server's acknowledgement)
  // that also lets the page cancel this one listener.
  function Subscription(client, channel, callback, context) {
    this._client = client;
    this._channel = channel;
    this._callback = callback;
    this._context = context;
    this._withChannel = null;
    this._cancelled = false;
    this._settle();
  }
  Object.assign(Subscription.prototype, Thenable, {
    // Also call fn(channel, data): the concrete channel, for wildcard patterns.
    withChannel: function (fn, context) {
      this._withChannel = [fn, context];
      return this;
    },

    cancel: function () {
      if (this._cancelled) return;
      this._cancelled = true;
      this._client.unsubscribe(this._channel, this);
    },

    unsubscribe: function () {
      this.cancel();
    },

    _deliver: function (message) {
      try {
        if (typeof this._callback === 'function') this._callback.call(this._context, message.data);
        if (this._withChannel) this._withChannel[0].call(this._withChannel[1], message.channel, message.data);
      } catch (error) {
        report(error);
      }
    }
  });

  // -------------------------------------------------------------- presence

  // A channel name a server may keep presence for: no wildcard, not under
  // /meta, /service or /presence.
  function canHavePresence(name) {
    return isChannelName(name) && !/^\/(meta|service|presence)(\/|$)/.test(name);
  }

  function isPresenceChannel(name) {
    return isChannelName(name) && name.indexOf(PRESENCE + '/') === 0 &&
      canHavePresence(name.slice(PRESENCE.length));
  }

  // {user, info} from a delivery's member, or null if it is not one.
  function presenceMember(value) {
    if (!value || typeof value !== 'object' || typeof value.user !== 'string' || !value.user) {
      return null;
    }
    return {user: value.user, info: value.info === undefined ? null : value.info};
  }

  // The members of one channel (user -> info, in join order), kept from the
  // deliveries on its presence channel: one {members: [...]} list after each
  // subscribe, then {join: member} and {leave: member}. One per presence
  // channel the client listens on, shared by every Presence of the channel
  // (the server sends the list once per subscription of the session).
  function Roster() {
    this.members = new Map();
    this.synced = false;
    this.views = [];
  }
  Roster.prototype = {
    list: function () {
      var list = [];
      this.members.forEach(function (info, user) { list.push({user: user, info: info}); });
      return list;
    },

    // Take a delivery's data; tell the views what changed. Joins and leaves
    // before the first list are in it already. A later list (after a new
    // handshake) is told as the leaves and joins that differ, then as itself.
    apply: function (data) {
      if (!data || typeof data !== 'object' || Array.isArray(data)) return;
      var keys = Object.keys(data);
      if (keys.length !== 1) return;
      var kind = keys[0];
      var changes = [];
      if (kind === 'members') {
        if (!Array.isArray(data.members)) return;
        var listed = new Map();
        data.members.forEach(function (entry) {
          var member = presenceMember(entry);
          if (member && !listed.has(member.user)) listed.set(member.user, member.info);
        });
        if (this.synced) {
          this.members.forEach(function (info, user) {
            if (!listed.has(user)) changes.push(['leave', {user: user, info: info}]);
          });
          var old = this.members;
          listed.forEach(function (info, user) {
            if (!old.has(user)) changes.push(['join', {user: user, info: info}]);
          });
        }
        this.members = listed;
        this.synced = true;
        changes.push(['members', this.list()]);
      } else if (kind === 'join' || kind === 'leave') {
        var member = presenceMember(data[kind]);
        if (!member || !this.synced) return;
        if (kind === 'join') {
          var known = this.members.has(member.user);
          this.members.set(member.user, member.info);
          if (!known) changes.push(['join', member]);
        } else if (this.members.has(member.user)) {
          if (member.info === null) member.info = this.members.get(member.user);
          this.members.delete(member.user);
          changes.push(['leave', member]);
        }
      }
      this.views.slice().forEach(function (view) { view._changed(changes); });
    }
  };

  // What client.presence(channel) returns: a thenable resolved with the
  // members list once the server sent it, members(), and the events
  // 'members' (the whole list: the first one, and after a new handshake),
  // 'join' and 'leave' (a {user, info} member). See docs/browser.md.
  function Presence(client, channel, options) {
    options = options || {};
    checkOptions(options, PRESENCE_OPTIONS);
    this.channel = channel;
    this._client = client;
    this._cancelled = false;
    this._settle();
    var self = this;
    var watch = PRESENCE + channel;
    var seconds = options.timeout === undefined ? 10 : options.timeout;
    this._subscription = client.subscribe(watch, noop);
    this._roster = client._rosters.get(watch) || new Roster();
    this._roster.views.push(this);
    if (this._roster.synced) {
      // The list came for an earlier listener: this one starts from it.
      Promise.resolve().then(function () {
        if (!self._cancelled) self._changed([['members', self._roster.list()]]);
      }).catch(report);
    }
    this._subscription.then(function () {
      if (self._roster.synced || self._cancelled || seconds <= 0) return;
      self._timer = later(function () {
        self._fail(new BayeuxError(null, [], 'No members list for ' + channel +
                                   ': is presence on for it on the server?'));
      }, seconds);
    }, function (error) {
      self._fail(error);
      self.cancel();
    });
  }
  Object.assign(Presence.prototype, Thenable, Events, {
    // [{user, info}, ...] of everyone in the channel, in join order (a copy).
    members: function () {
      return this._roster.list();
    },

    cancel: function () {
      if (this._cancelled) return;
      this._cancelled = true;
      global.clearTimeout(this._timer);
      var roster = this._roster;
      if (roster.views.indexOf(this) >= 0) roster.views.splice(roster.views.indexOf(this), 1);
      // members() stays as it was (the roster goes on for other listeners).
      this._roster = new Roster();
      this._roster.members = new Map(roster.members);
      this._roster.synced = roster.synced;
      this._subscription.cancel();
    },

    unsubscribe: function () {
      this.cancel();
    },

    _changed: function (changes) {
      if (this._cancelled) return;
      for (var i = 0; i < changes.length; i++) {
        if (changes[i][0] === 'members') this._succeed(changes[i][1]);
        this.trigger(changes[i][0], changes[i][1]);
      }
    }
  });

  // ------------------------------------------------------------ scheduler

  // Decides, per message, how long to wait for a reply, how long to wait
  // before sending again, and whether to try at all. Pass a replacement as the
  // `scheduler` option (same methods) to change the retry policy.
  function Scheduler(message, options) {
    this.message = message;
    this.options = options;
    this.attempts = 0;
  }
  Scheduler.prototype = {
    constructor: Scheduler,
    getTimeout: function () { return this.options.timeout; },
    getInterval: function () { return this.options.interval; },
    isDeliverable: function () {
      var options = this.options;
      if (options.attempts !== undefined && this.attempts >= options.attempts) return false;
      if (options.deadline !== undefined && Date.now() > options.deadline) return false;
      return true;
    },
    send: function () { this.attempts += 1; },
    succeed: noop,
    fail: noop,
    abort: noop
  };

  // ------------------------------------------------------------ transports

  // The common part. HTTP transports gather the messages of one tick into one
  // request of at most MAX_REQUEST_SIZE characters, and keep one such request
  // out at a time: the next one, with whatever was sent meanwhile, goes when
  // it is answered. Two requests out at once may reach the server in either
  // order, and the page's messages must arrive in the order it made them. A
  // lone /meta/connect, which the server holds, goes at once on a request of
  // its own, so that nothing waits behind it. sendMessage() returns a promise
  // of the request the message went in (null if it never went), which the
  // dispatcher can abort. request(messages, done) is each transport's own:
  // it calls done(replies), or done(null) if the request failed.
  function Transport(dispatcher, endpoint) {
    this._dispatcher = dispatcher;
    this.endpoint = endpoint;
    this._outbox = []; // [{message, resolve}], in the order sent
    this._flushTimer = null;
    this._busy = false; // a request other than a lone connect is out
  }
  Transport.prototype = {
    batching: true,

    close: noop,

    encode: function (messages) {
      return JSON.stringify(messages);
    },

    sendMessage: function (message) {
      if (!this.batching) return Promise.resolve(this.request([message]));
      var self = this;
      var sent = new Promise(function (resolve) {
        self._outbox.push({message: message, resolve: resolve});
      });
      if (this._flushTimer === null) {
        var delay = message.channel === META.handshake ? HANDSHAKE_DELAY : 0;
        this._flushTimer = global.setTimeout(function () { self._flush(); }, delay);
      }
      return sent;
    },

    _flush: function () {
      global.clearTimeout(this._flushTimer);
      this._flushTimer = null;
      while (this._outbox.length > 0) {
        if (this._busy) {
          // Only a connect passes the request that is out.
          var index = this._outbox.findIndex(function (entry) {
            return entry.message.channel === META.connect;
          });
          if (index < 0) return;
          this._request(this._outbox.splice(index, 1), false);
          continue;
        }
        var entries = this._nextBatch();
        var alone = entries.length === 1 && entries[0].message.channel === META.connect;
        // A connect sharing a request with other messages must not be held by
        // the server, or their replies would wait for it.
        if (!alone) {
          entries.forEach(function (entry) {
            if (entry.message.channel === META.connect) entry.message.advice = {timeout: 0};
          });
        }
        this._request(entries, !alone);
      }
    },

    // The first messages of the outbox that fit in one request (at least one).
    _nextBatch: function () {
      var limit = this._dispatcher.maxRequestSize;
      var outbox = this._outbox;
      var count = 1;
      var messages = [outbox[0].message];
      while (count < outbox.length) {
        messages.push(outbox[count].message);
        if (this.encode(messages).length >= limit) break;
        count += 1;
      }
      return outbox.splice(0, count);
    },

    _request: function (entries, lane) {
      var self = this;
      var messages = entries.map(function (entry) { return entry.message; });
      var finished = false;
      if (lane) this._busy = true;
      var request = this.request(messages, function (replies) {
        if (finished) return;
        finished = true;
        var failed = messages;
        if (lane) {
          self._busy = false;
          // What waited behind a failed request fails with it, so that it is
          // sent again after it, in order, not before it.
          if (!replies) failed = messages.concat(self._takeQueued());
        }
        if (replies) self._receive(replies);
        else self._handleError(failed);
        if (lane && self._outbox.length > 0) self._flush();
      });
      entries.forEach(function (entry) { entry.resolve(request); });
    },

    // The outbox's messages other than connects, taken out of it.
    _takeQueued: function () {
      var taken = [];
      this._outbox = this._outbox.filter(function (entry) {
        if (entry.message.channel === META.connect) return true;
        taken.push(entry.message);
        entry.resolve(null);
        return false;
      });
      return taken;
    },

    _receive: function (replies) {
      var dispatcher = this._dispatcher;
      var type = this.connectionType;
      writeLog('debug', 'Transport', function () { return 'received via ' + type + ': ' + describe(replies); });
      var replayed = false;
      [].concat(replies).forEach(function (reply) {
        if (!reply || typeof reply !== 'object') return;
        if (reply.channel === META.connect) replayed = dispatcher._client._ackReplayed(reply);
        // Deliveries after a connect reply numbering a batch already handled
        // are a copy of it (acknowledged delivery, docs/delivery.md).
        else if (replayed && reply.successful === undefined) return;
        dispatcher.handleResponse(reply);
      });
    },

    _handleError: function (messages, immediate) {
      var dispatcher = this._dispatcher;
      var type = this.connectionType;
      writeLog('debug', 'Transport', function () { return 'failed via ' + type + ': ' + describe(messages); });
      messages.forEach(function (message) { dispatcher.handleError(message, immediate); });
    }
  };

  function defineTransport(base, methods, statics) {
    var Klass = function (dispatcher, endpoint) {
      (methods.initialize || base).call(this, dispatcher, endpoint);
    };
    Klass.prototype = Object.assign(Object.create(base.prototype), methods, {constructor: Klass});
    Object.assign(Klass, statics);
    return Klass;
  }

  function setHeaders(xhr, headers) {
    Object.keys(headers).forEach(function (name) { xhr.setRequestHeader(name, headers[name]); });
  }

  // long-polling: a JSON POST to an endpoint of the page's own origin.
  var XHRTransport = defineTransport(Transport, {
    request: function (messages, done) {
      var xhr = new XMLHttpRequest();
      var finished = false;
      xhr.open('POST', this.endpoint.href, true);
      xhr.setRequestHeader('Content-Type', 'application/json');
      xhr.setRequestHeader('Pragma', 'no-cache');
      xhr.setRequestHeader('X-Requested-With', 'XMLHttpRequest');
      setHeaders(xhr, this._dispatcher.headers);
      xhr.onreadystatechange = function () {
        if (xhr.readyState !== 4 || finished) return;
        finished = true;
        var ok = (xhr.status >= 200 && xhr.status < 300) || xhr.status === 304;
        done(ok ? parseJSON(xhr.responseText) : null);
      };
      xhr.send(this.encode(messages));
      return {abort: function () { if (!finished) xhr.abort(); }};
    }
  }, {
    isUsable: function (dispatcher, endpoint) {
      return isSameOrigin(endpoint) || (global.navigator && global.navigator.product === 'ReactNative');
    }
  });

  // cross-origin-long-polling: a CORS POST of a form field `message=<JSON>`,
  // with credentials (cookies) as Faye sends it.
  var CORSTransport = defineTransport(Transport, {
    encode: function (messages) {
      return 'message=' + encodeURIComponent(JSON.stringify(messages));
    },

    request: function (messages, done) {
      var xhr = new XMLHttpRequest();
      var finished = false;
      var finish = function (replies) {
        if (finished) return;
        finished = true;
        xhr.onload = xhr.onerror = xhr.ontimeout = xhr.onabort = null;
        done(replies);
      };
      xhr.open('POST', this.endpoint.href, true);
      xhr.withCredentials = true;
      xhr.setRequestHeader('Pragma', 'no-cache');
      setHeaders(xhr, this._dispatcher.headers);
      xhr.onload = function () {
        var ok = xhr.status >= 200 && xhr.status < 300;
        finish(ok ? parseJSON(xhr.responseText) : null);
      };
      xhr.onerror = xhr.ontimeout = xhr.onabort = function () { finish(null); };
      xhr.send(this.encode(messages));
      return {abort: function () { if (!finished) xhr.abort(); }};
    }
  }, {
    isUsable: function (dispatcher, endpoint) {
      if (isSameOrigin(endpoint) || !global.XMLHttpRequest) return false;
      return 'withCredentials' in new XMLHttpRequest();
    }
  });

  // callback-polling: JSON-P, a <script> GET ?message=<JSON>&jsonp=<callback>.
  // Works across origins in every browser; the handshake of a cross-origin
  // page goes this way.
  var jsonpCount = 0;

  var JSONPTransport = defineTransport(Transport, {
    _url: function (messages, callbackName) {
      var url = new URL(this.endpoint.href);
      url.searchParams.set('message', JSON.stringify(messages));
      url.searchParams.set('jsonp', callbackName);
      return url.href;
    },

    encode: function (messages) {
      return this._url(messages, '__jsonp' + (jsonpCount + 1) + '__');
    },

    request: function (messages, done) {
      var name = '__jsonp' + (++jsonpCount) + '__';
      var script = document.createElement('script');
      var pending = true;
      var finish = function () {
        if (!pending) return false;
        pending = false;
        script.onload = script.onerror = null;
        if (script.parentNode) script.parentNode.removeChild(script);
        return true;
      };
      global[name] = function (replies) {
        delete global[name];
        if (finish()) done(replies || null);
      };
      // A script that loads without calling back, or fails to load, failed.
      script.onload = script.onerror = function () {
        delete global[name];
        if (finish()) done(null);
      };
      script.src = this._url(messages, name);
      (document.head || document.documentElement).appendChild(script);
      return {
        abort: function () {
          // The script may still run later: leave a callback that only tidies up.
          if (!finish()) return;
          global[name] = function () { delete global[name]; };
          done(null);
        }
      };
    }
  }, {
    isUsable: function () { return typeof document !== 'undefined'; }
  });

  // websocket: one socket per endpoint, opened during the handshake (to know
  // early whether it works) and reopened when it drops. Not batched: each
  // message is its own frame. Messages sent and not yet answered are sent
  // again if the socket closes.
  var WebSocketTransport = defineTransport(Transport, {
    initialize: function (dispatcher, endpoint) {
      Transport.call(this, dispatcher, endpoint);
      this._socket = null;
      this._opening = null;
      this._everConnected = false;
      this._pending = new Map();
    },

    batching: false,

    // True if the socket is open; else a promise: true once it opens, false
    // if this attempt fails. (An answer known at once lets the transport be
    // chosen at once.)
    isUsable: function () {
      return this._socket ? true : this._open();
    },

    _open: function () {
      if (this._socket) return Promise.resolve(true);
      if (this._opening) return this._opening;
      if (unloading || typeof global.WebSocket !== 'function') return Promise.resolve(false);
      var self = this;
      var socket;
      try {
        socket = new global.WebSocket(WebSocketTransport.socketURL(this.endpoint));
      } catch (error) {
        return Promise.resolve(false); // a Content-Security-Policy refusal, say
      }
      this._opening = new Promise(function (resolve) {
        var closed = false;
        socket.onopen = function () {
          self._opening = null;
          self._socket = socket;
          self._everConnected = true;
          resolve(true);
        };
        socket.onclose = socket.onerror = function () {
          if (closed) return;
          closed = true;
          socket.onopen = socket.onclose = socket.onerror = socket.onmessage = null;
          var wasOpen = self._socket === socket;
          if (wasOpen) self._socket = null;
          else self._opening = null;
          resolve(false);
          var pending = Array.from(self._pending.values());
          self._pending.clear();
          // A socket that never opened is only a failed probe. One that
          // worked before is a dropped connection: its messages go again,
          // at once if it was open, after `retry` if reopening failed.
          if (self._everConnected) self._handleError(pending, wasOpen);
        };
        socket.onmessage = function (event) {
          var replies = parseJSON(event.data);
          if (!replies) return;
          replies = [].concat(replies);
          replies.forEach(function (reply) {
            if (reply && reply.successful !== undefined) self._pending.delete(reply.id);
          });
          self._receive(replies);
        };
      });
      return this._opening;
    },

    request: function (messages) {
      var self = this;
      messages.forEach(function (message) { self._pending.set(message.id, message); });
      var sent = this._open().then(function (open) {
        var socket = self._socket;
        if (!open || !socket || socket.readyState !== 1) return null;
        socket.send(JSON.stringify(messages));
        return socket;
      });
      return {
        abort: function () {
          sent.then(function (socket) { if (socket) socket.close(); });
        }
      };
    },

    close: function () {
      if (this._socket) this._socket.close();
    }
  }, {
    socketURL: function (endpoint) {
      var url = new URL(endpoint.href);
      url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
      return url.href;
    },

    create: function (dispatcher, endpoint) {
      var sockets = dispatcher.transports.websocket || (dispatcher.transports.websocket = new Map());
      if (!sockets.has(endpoint.href)) sockets.set(endpoint.href, new WebSocketTransport(dispatcher, endpoint));
      return sockets.get(endpoint.href);
    },

    isUsable: function (dispatcher, endpoint) {
      return WebSocketTransport.create(dispatcher, endpoint).isUsable();
    }
  });

  // eventsource: the server pushes over an EventSource stream at
  // <endpoint>/<clientId>; messages to the server go by long-polling POSTs.
  // Same origin only, and only once there is a client id.
  var EventSourceTransport = defineTransport(Transport, {
    initialize: function (dispatcher, endpoint) {
      Transport.call(this, dispatcher, endpoint);
      var self = this;
      this._xhr = new XHRTransport(dispatcher, endpoint);
      this._xhr.connectionType = 'eventsource';
      var url = new URL(endpoint.href);
      url.pathname += '/' + dispatcher.clientId;
      var everConnected = false;
      var source = this._source = new global.EventSource(url.href);
      this._usable = new Promise(function (resolve) {
        source.onopen = function () {
          everConnected = true;
          resolve(true);
        };
        source.onerror = function () {
          // After a drop the browser reconnects by itself (every 5 s, as the
          // server asks); a stream that never opened is a failed probe.
          if (everConnected) return;
          resolve(false);
          self.close();
        };
      });
      source.onmessage = function (event) {
        var replies = parseJSON(event.data);
        if (replies) self._receive(replies);
      };
    },

    isUsable: function () { return this._usable; },

    encode: function (messages) { return this._xhr.encode(messages); },

    request: function (messages, done) { return this._xhr.request(messages, done); },

    close: function () {
      var source = this._source;
      if (!source) return;
      source.onopen = source.onerror = source.onmessage = null;
      source.close();
      this._source = null;
    }
  }, {
    create: function (dispatcher, endpoint) {
      var streams = dispatcher.transports.eventsource || (dispatcher.transports.eventsource = new Map());
      var key = endpoint.href + '/' + dispatcher.clientId;
      var stream = streams.get(key);
      if (!stream || !stream._source) {
        stream = new EventSourceTransport(dispatcher, endpoint);
        streams.set(key, stream);
      }
      return stream;
    },

    isUsable: function (dispatcher, endpoint) {
      if (!dispatcher.clientId || typeof global.EventSource !== 'function') return false;
      if (!XHRTransport.isUsable(dispatcher, endpoint)) return false;
      return EventSourceTransport.create(dispatcher, endpoint).isUsable();
    }
  });

  // In order of preference, as Faye registers them.
  var TRANSPORTS = [
    ['websocket', WebSocketTransport],
    ['eventsource', EventSourceTransport],
    ['long-polling', XHRTransport],
    ['cross-origin-long-polling', CORSTransport],
    ['callback-polling', JSONPTransport]
  ];
  TRANSPORTS.forEach(function (entry) { entry[1].prototype.connectionType = entry[0]; });

  function createTransport(Klass, dispatcher, endpoint) {
    return typeof Klass.create === 'function' ? Klass.create(dispatcher, endpoint) : new Klass(dispatcher, endpoint);
  }

  // ------------------------------------------------------------ dispatcher

  // Sends messages through the current transport and sees each one answered:
  // every message has an envelope with a timer; a message whose reply does
  // not come in time, or whose request fails, is sent again (same id) after
  // `retry` seconds, for as long as its scheduler allows.
  //
  // The page's messages (all but handshakes and connects, which belong to the
  // session) leave in the order they were made, resends included. Unlike
  // Faye's, where each message goes again on its own timer while newer ones
  // go at once, a message waiting to be sent again holds back every later
  // one until it goes; so does one still out on a previous transport, until
  // it is answered or fails (an HTTP request and a frame on a new WebSocket
  // may arrive in either order). Envelopes are kept in the order they were
  // made (a Map keeps insertion order), and _pump() sends what may go.
  function Dispatcher(client, endpoint, options) {
    this._client = client;
    this.endpoint = parseURL(endpoint);
    this._alternates = {};
    var alternates = options.endpoints || {};
    Object.keys(alternates).forEach(function (type) {
      this._alternates[type] = parseURL(alternates[type]);
    }, this);
    this._disabled = [];
    this._envelopes = new Map();
    this.headers = {};
    this.retry = options.retry || DEFAULT_RETRY;
    this._scheduler = options.scheduler || Scheduler;
    this._up = null; // null until the first reply or failure
    this.transports = {};
    this.maxRequestSize = MAX_REQUEST_SIZE;
    this.clientId = null;
    this.connectionType = null;
    this.timeout = DEFAULT_TIMEOUT;
    this._transport = null;
    this._selection = 0;
    this._pumping = false;
    this._pumpAgain = false;
    this._blocked = false; // at the last pump, a message held back those after it
    this._holding = false; // and it held one back
  }
  Dispatcher.prototype = {
    endpointFor: function (type) {
      return this._alternates[type] || this.endpoint;
    },

    disable: function (feature) {
      this._disabled.push(feature);
    },

    isDisabled: function (feature) {
      return this._disabled.indexOf(feature) >= 0;
    },

    setHeader: function (name, value) {
      this.headers[name] = value;
    },

    getConnectionTypes: function () {
      return TRANSPORTS.map(function (entry) { return entry[0]; });
    },

    close: function () {
      var transport = this._transport;
      this._transport = null;
      if (transport) transport.close();
    },

    // Take the first usable transport, in our order, among `types`. Those
    // not allowed are still asked (that opens the WebSocket during the
    // handshake, so it is ready when the server's answer arrives). Answers
    // known at once are used at once; the first that must wait for a socket
    // to open is awaited, while the current transport stays in use. Returns
    // a promise settled once the choice is made.
    selectTransport: function (types) {
      var self = this;
      var generation = ++this._selection;
      var candidates = TRANSPORTS.filter(function (entry) { return !self.isDisabled(entry[0]); });
      var choose = function (index) {
        for (; index < candidates.length; index++) {
          var type = candidates[index][0];
          var Klass = candidates[index][1];
          var endpoint = self.endpointFor(type);
          var usable = Klass.isUsable(self, endpoint);
          if (types.indexOf(type) < 0) continue;
          if (usable === true) {
            self._useTransport(generation, createTransport(Klass, self, endpoint));
            return Promise.resolve();
          }
          if (usable && typeof usable.then === 'function') {
            return usable.then(function (ok) {
              if (generation !== self._selection) return undefined;
              if (!ok) return choose(index + 1);
              self._useTransport(generation, createTransport(Klass, self, endpoint));
              return undefined;
            });
          }
        }
        report(new Error('Could not find a usable connection type for ' + self.endpoint.href));
        return Promise.resolve();
      };
      return choose(0);
    },

    _useTransport: function (generation, transport) {
      if (generation !== this._selection || transport === this._transport) return;
      writeLog('debug', 'Dispatcher', 'selected ' + transport.connectionType + ' for ' + transport.endpoint.href);
      var previous = this._transport;
      this._transport = transport;
      this.connectionType = transport.connectionType;
      if (previous) previous.close();
      // Messages that waited for a transport go now.
      this._pump();
    },

    sendMessage: function (message, timeout, options) {
      var envelope = this._envelopes.get(message.id);
      if (!envelope) {
        var deadline = options.deadline && Date.now() + options.deadline * 1000;
        envelope = {
          message: message,
          scheduler: new this._scheduler(message, {
            timeout: timeout, interval: this.retry, attempts: options.attempts, deadline: deadline
          }),
          ordered: message.channel !== META.handshake && message.channel !== META.connect,
          request: null, // a promise of the request it is out in
          transport: null, // the transport it is out on
          timer: null, // until its reply is overdue
          retry: null // until it may be sent again
        };
        this._envelopes.set(message.id, envelope);
        // Nothing to wait behind (the usual case): no need to look at the rest.
        if (!this._blocked && !this._pumping && this._transport) {
          this._sendEnvelope(envelope);
          return;
        }
      }
      this._pump();
    },

    // Send every message that may go now, in order: a message out on the
    // current transport lets the next one go; one waiting for its retry, or
    // out on a previous transport, holds the page's later messages back.
    _pump: function () {
      if (this._pumping) {
        this._pumpAgain = true; // a transport called back into us: once more after
        return;
      }
      this._pumping = true;
      try {
        do {
          this._pumpAgain = false;
          this._pumpOnce();
        } while (this._pumpAgain);
      } finally {
        this._pumping = false;
      }
    },

    _pumpOnce: function () {
      var transport = this._transport;
      var held = false;
      var holding = false;
      if (!transport) return;
      this._envelopes.forEach(function (envelope) {
        if (envelope.request) {
          if (envelope.ordered && envelope.transport !== transport) held = true;
        } else if (envelope.retry) {
          if (envelope.ordered) held = true;
        } else if (held && envelope.ordered) {
          holding = true;
        } else {
          this._sendEnvelope(envelope);
        }
      }, this);
      this._blocked = held;
      this._holding = holding;
    },

    _sendEnvelope: function (envelope) {
      var self = this;
      var message = envelope.message;
      var scheduler = envelope.scheduler;
      if (!scheduler.isDeliverable()) {
        scheduler.abort();
        this._envelopes.delete(message.id);
        return;
      }
      envelope.timer = later(function () { self.handleError(message); }, scheduler.getTimeout());
      scheduler.send();
      envelope.transport = this._transport;
      envelope.request = this._transport.sendMessage(message);
    },

    handleResponse: function (reply) {
      var envelope = this._envelopes.get(reply.id);
      if (reply.successful !== undefined && envelope) {
        envelope.scheduler.succeed();
        this._envelopes.delete(reply.id);
        global.clearTimeout(envelope.timer);
        global.clearTimeout(envelope.retry);
      }
      this.trigger('message', reply);
      // An answered message no longer holds back those after it.
      if (this._holding) this._pump();
      if (this._up === true) return;
      this._up = true;
      this._client.trigger('transport:up');
    },

    // `message` got no reply: sent again at once (`immediate`: its socket
    // closed, and another may open now) or after its scheduler's interval,
    // and until then the page's later messages wait behind it.
    handleError: function (message, immediate) {
      var envelope = this._envelopes.get(message.id);
      if (!envelope || !envelope.request) return;
      var self = this;
      envelope.request.then(function (request) {
        if (request && request.abort) request.abort();
      });
      envelope.scheduler.fail();
      global.clearTimeout(envelope.timer);
      envelope.request = envelope.transport = envelope.timer = null;
      if (!immediate) {
        envelope.retry = later(function () {
          envelope.retry = null;
          self._pump();
        }, envelope.scheduler.getInterval());
      }
      this._pump();
      if (this._up === false) return;
      this._up = false;
      this._client.trigger('transport:down');
    }
  };
  Object.assign(Dispatcher.prototype, Events);

  // ---------------------------------------------------------------- client

  // new Faye.Client(endpoint, {timeout, interval, retry, endpoints, scheduler,
  //                            ack, token, tokenField})
  function Client(endpoint, options) {
    options = options || {};
    checkOptions(options, CLIENT_OPTIONS);
    if (options.token !== undefined && typeof options.token !== 'function') {
      throw new Error('token must be a function returning the token (or a Promise of it)');
    }
    // Called before each handshake; what it gives goes into ext at tokenField.
    this._token = options.token || null;
    this._tokenPath = extPath(options.tokenField === undefined ? 'auth.token' : options.tokenField);
    this._endpoint = endpoint || DEFAULT_ENDPOINT;
    writeLog('info', 'Client', 'new client for ' + this._endpoint);
    this._channels = new ChannelSet();
    // Presence channel -> Roster, while anyone listens on it.
    this._rosters = new Map();
    // History (docs/delivery.md): channel -> latest ext.history.position seen.
    this._positions = new Map();
    this._dispatcher = new Dispatcher(this, this._endpoint, options);
    this._messageId = 0;
    this._state = UNCONNECTED;
    // Counts the sessions the server forgot: a 'session:up' is for the latest.
    this._session = 0;
    this._responseCallbacks = new Map();
    // Service calls sent and waiting for their result: message id ->
    // settle(reply); and every unsettled call, sent or not.
    this._calls = new Map();
    this._openCalls = new Set();
    this._whenConnected = [];
    this._connectRequest = false;
    // Acknowledged delivery (CometD's ack extension) when options.ack is
    // true and the server agrees: the number of the last batch handled.
    this._ack = {wanted: options.ack === true, on: false, batch: 0};
    this._extensions = [];
    this._advice = {
      reconnect: 'retry',
      interval: 1000 * (options.interval || DEFAULT_INTERVAL),
      timeout: 1000 * (options.timeout || DEFAULT_TIMEOUT)
    };
    this._dispatcher.timeout = this._advice.timeout / 1000;
    this._dispatcher.bind('message', this._receiveMessage, this);

    var self = this;
    if (typeof global.addEventListener === 'function') {
      global.addEventListener('beforeunload', function () {
        if (!self._dispatcher.isDisabled('autodisconnect')) self.disconnect();
      });
    }
  }

  Client.prototype = {
    constructor: Client,

    UNCONNECTED: UNCONNECTED,
    CONNECTING: CONNECTING,
    CONNECTED: CONNECTED,
    DISCONNECTED: DISCONNECTED,

    // 'websocket', 'eventsource', 'long-polling', 'cross-origin-long-polling',
    // 'callback-polling', or 'autodisconnect' (no disconnect on page unload).
    disable: function (feature) {
      this._dispatcher.disable(feature);
    },

    // A header for every HTTP request (browsers allow none on WebSocket,
    // EventSource or JSON-P requests).
    setHeader: function (name, value) {
      this._dispatcher.setHeader(name, value);
    },

    // Browsers negotiate WebSocket extensions themselves: accepted, unused.
    addWebsocketExtension: noop,

    addExtension: function (extension) {
      this._extensions.push(extension);
      if (typeof extension.added === 'function') extension.added(this);
    },

    removeExtension: function (extension) {
      var before = this._extensions.length;
      this._extensions = this._extensions.filter(function (e) { return e !== extension; });
      if (this._extensions.length < before && typeof extension.removed === 'function') {
        extension.removed(this);
      }
    },

    handshake: function (callback, context) {
      if (this._advice.reconnect === 'none' || this._state !== UNCONNECTED) return;
      var self = this;
      var dispatcher = this._dispatcher;
      this._state = CONNECTING;
      writeLog('info', 'Client', 'handshake with ' + dispatcher.endpoint.href);
      dispatcher.selectTransport(MANDATORY);
      this._sendMessage({
        channel: META.handshake,
        version: BAYEUX_VERSION,
        supportedConnectionTypes: dispatcher.getConnectionTypes()
      }, {}, function (reply) {
        if (reply.successful) {
          if (self._state !== CONNECTING) return; // disconnected meanwhile
          dispatcher.clientId = reply.clientId;
          self._ack.on = self._ack.wanted && !!reply.ext && reply.ext.ack === true;
          writeLog('info', 'Client', 'handshake successful');
          var done = false;
          var connected = function () {
            if (done || self._state !== CONNECTING) return;
            done = true;
            self._state = CONNECTED;
            // Subscribe again to everything the page listens to (after a
            // re-handshake the server has forgotten it); 'session:up' once
            // each of those subscribes is answered.
            var session = self._session;
            var restoring = self.subscribe(self._channels.keys(), true);
            var left = restoring.length;
            var answered = function () {
              left -= 1;
              if (left > 0 || session !== self._session || self._state !== CONNECTED) return;
              writeLog('info', 'Client', 'session up, subscriptions in place');
              self.trigger('session:up');
            };
            left += 1;
            restoring.forEach(function (subscription) { subscription.then(answered, answered); });
            answered();
            if (callback) callback.call(context);
          };
          // Connect once the transport is chosen, or after TRANSPORT_WAIT
          // over the current one (the choice may still switch later).
          dispatcher.selectTransport(reply.supportedConnectionTypes || dispatcher.getConnectionTypes())
            .then(connected);
          later(connected, TRANSPORT_WAIT);
        } else {
          writeLog('info', 'Client', 'handshake unsuccessful');
          if (self._state === CONNECTING) self._state = UNCONNECTED;
          later(function () { self.handshake(callback, context); }, dispatcher.retry);
        }
      });
    },

    // Run `callback` once connected (handshaking first if needed), and keep
    // one /meta/connect outstanding: that is what brings messages in.
    connect: function (callback, context) {
      if (this._advice.reconnect === 'none' || this._state === DISCONNECTED) return;
      if (this._state === UNCONNECTED) {
        var self = this;
        this.handshake(function () { self.connect(callback, context); });
        return;
      }
      if (callback) this._whenConnected.push([callback, context]);
      if (this._state !== CONNECTED) return;

      var waiting = this._whenConnected;
      this._whenConnected = [];
      waiting.forEach(function (entry) {
        Promise.resolve().then(function () { entry[0].call(entry[1]); }).catch(report);
      });

      if (this._connectRequest) return;
      this._connectRequest = true;
      this._sendMessage({
        channel: META.connect,
        clientId: this._dispatcher.clientId,
        connectionType: this._dispatcher.connectionType
      }, {}, this._cycleConnection.bind(this));
    },

    // Ends the session; returns a thenable settled by the server's reply.
    disconnect: function () {
      var done = new Publication();
      if (this._state !== CONNECTED) {
        done._succeed();
        return done;
      }
      var self = this;
      this._state = DISCONNECTED;
      writeLog('info', 'Client', 'disconnecting');
      this._sendMessage({channel: META.disconnect, clientId: this._dispatcher.clientId}, {}, function (reply) {
        if (reply.successful) {
          self._dispatcher.close();
          done._succeed();
        } else {
          done._fail(BayeuxError.parse(reply.error));
        }
      });
      this._channels = new ChannelSet();
      this._rosters.clear();
      this._positions.clear();
      return done;
    },

    // subscribe(channel or [channels], callback, context) -> Subscription(s).
    // A channel already subscribed to gets the new listener at once, with no
    // message to the server.
    subscribe: function (channel, callback, context) {
      if (Array.isArray(channel)) {
        return channel.map(function (name) { return this.subscribe(name, callback, context); }, this);
      }
      var self = this;
      var resubscribe = callback === true;
      var subscription = new Subscription(this, channel, resubscribe ? null : callback, context);
      if (!resubscribe && !this._rosters.has(channel) && isPresenceChannel(channel)) {
        this._rosters.set(channel, new Roster());
      }

      if (!resubscribe && this._channels.has(channel)) {
        this._channels.add(channel, subscription);
        subscription._succeed();
        return subscription;
      }

      this.connect(function () {
        if (subscription._cancelled) return; // cancelled before we got here
        // Registered only now, so that the re-subscription that follows a
        // handshake does not send this channel a second time.
        if (!resubscribe) self._channels.add(channel, subscription);
        writeLog('info', 'Client', 'subscribing to ' + channel);
        var request = {
          channel: META.subscribe,
          clientId: self._dispatcher.clientId,
          subscription: channel
        };
        // A known position asks the server to replay what followed it.
        var since = self._positions.get(channel);
        if (since !== undefined) request.ext = {history: {since: since}};
        self._sendMessage(request, {}, function (reply) {
          if (reply.successful) {
            self._historyReply(channel, reply);
            subscription._succeed();
          } else {
            subscription._fail(BayeuxError.parse(reply.error));
            if (self._channels.remove(channel, subscription)) self._rosters.delete(channel);
          }
        });
      });
      return subscription;
    },

    // unsubscribe(channel, subscription): remove that listener (all of them
    // when none is given); the server hears of it when none is left.
    unsubscribe: function (channel, subscription) {
      if (Array.isArray(channel)) {
        return channel.map(function (name) { return this.unsubscribe(name, subscription); }, this);
      }
      if (!this._channels.remove(channel, subscription)) return;
      this._positions.delete(channel);
      this._rosters.delete(channel);
      var self = this;
      this.connect(function () {
        writeLog('info', 'Client', 'unsubscribing from ' + channel);
        self._sendMessage({
          channel: META.unsubscribe,
          clientId: self._dispatcher.clientId,
          subscription: channel
        }, {}, null);
      });
    },

    // publish(channel, data, {attempts, deadline}) -> a thenable: resolved
    // when the server accepts, rejected with its error when it refuses.
    publish: function (channel, data, options) {
      checkOptions(options || {}, PUBLISH_OPTIONS);
      var self = this;
      var publication = new Publication();
      this.connect(function () {
        self._sendMessage({
          channel: channel,
          data: data,
          clientId: self._dispatcher.clientId
        }, options, function (reply) {
          if (reply.successful) publication._succeed();
          else publication._fail(BayeuxError.parse(reply.error));
        });
      });
      return publication;
    },

    // presence(channel, {timeout}) -> a Presence: who is in `channel`, a
    // channel the server keeps presence for (not in Faye; docs/browser.md).
    presence: function (channel, options) {
      if (!canHavePresence(channel)) {
        throw new Error('Cannot follow the presence of ' + channel + ': not a channel name, or under /meta, /service or /presence');
      }
      return new Presence(this, channel, options);
    },

    // ------------------------------------------------------------- inside

    _sendMessage: function (message, options, callback) {
      var self = this;
      message.id = this._nextMessageId();
      var ack = this._ack;
      if (message.channel === META.handshake && ack.wanted) {
        ack.on = false;
        ack.batch = 0; // a new session numbers its batches afresh
        message.ext = Object.assign({}, message.ext, {ack: true});
      } else if (message.channel === META.connect && ack.on) {
        message.ext = Object.assign({}, message.ext, {ack: ack.batch});
      }
      var timeout = this._advice.timeout
        ? 1.2 * this._advice.timeout / 1000
        : 1.2 * this._dispatcher.retry;
      this._withToken(message, function (tokened) {
        self._pipeThroughExtensions('outgoing', tokened, function (outgoing) {
          if (!outgoing) return;
          if (callback) self._responseCallbacks.set(outgoing.id, callback);
          self._dispatcher.sendMessage(outgoing, timeout, options || {});
        });
      });
    },

    // A handshake gets the token option's answer (a string, or a Promise of
    // one) in ext at tokenField, before the extensions see it. A token
    // function that throws or rejects costs the handshake its token only:
    // the server refuses it, and the client tries again after `retry`.
    _withToken: function (message, send) {
      var token = this._token;
      if (!token || message.channel !== META.handshake) return send(message);
      var path = this._tokenPath;
      var put = function (value) {
        if (typeof value === 'string') message.ext = withExtValue(message.ext, path, value);
        else if (value !== null && value !== undefined) {
          writeLog('warn', 'Client', 'the token function gave a ' + typeof value + ', not a string: handshaking without a token');
        }
        send(message);
      };
      var failed = function (error) {
        writeLog('warn', 'Client', 'the token function failed (' + error + '): handshaking without a token');
        send(message);
      };
      var value;
      try {
        value = token();
      } catch (error) {
        return failed(error);
      }
      if (value && typeof value.then === 'function') Promise.resolve(value).then(put, failed).catch(report);
      else put(value);
    },

    // Takes a connect reply's batch number; true if that batch was handled.
    _ackReplayed: function (reply) {
      var ack = this._ack;
      var batch = reply.ext && reply.ext.ack;
      if (!ack.on || reply.successful !== true || typeof batch !== 'number') return false;
      if (batch <= ack.batch) return true;
      ack.batch = batch;
      return false;
    },

    _nextMessageId: function () {
      this._messageId += 1;
      if (this._messageId >= 4294967296) this._messageId = 0;
      return this._messageId.toString(36);
    },

    // Each extension's incoming/outgoing(message, callback) (or
    // (message, request, callback)) in turn; a falsy message stops the chain.
    _pipeThroughExtensions: function (stage, message, done) {
      var extensions = this._extensions.slice();
      var next = function (current) {
        if (!current) return done(current);
        var extension = extensions.shift();
        if (!extension) return done(current);
        var hook = extension[stage];
        if (typeof hook !== 'function') return next(current);
        if (hook.length >= 3) hook.call(extension, current, null, next);
        else hook.call(extension, current, next);
      };
      next(message);
    },

    _receiveMessage: function (message) {
      var self = this;
      var callback = null;
      if (message.successful !== undefined) {
        callback = this._responseCallbacks.get(message.id) || null;
        this._responseCallbacks.delete(message.id);
      }
      this._pipeThroughExtensions('incoming', message, function (incoming) {
        if (!incoming) return;
        if (incoming.advice) self._handleAdvice(incoming.advice, incoming);
        self._deliverMessage(incoming);
        if (callback) callback(incoming);
      });
    },

    _handleAdvice: function (advice, message) {
      Object.assign(this._advice, advice);
      this._dispatcher.timeout = this._advice.timeout / 1000;
      if (this._advice.reconnect === 'none' && this._state !== DISCONNECTED) {
        this._sessionEnded(message);
        return;
      }
      if (this._advice.reconnect === 'handshake' && this._state !== DISCONNECTED) {
        var lost = this._state !== UNCONNECTED;
        this._state = UNCONNECTED;
        this._session += 1;
        this._dispatcher.clientId = null;
        this._cycleConnection();
        // The server has forgotten the session (a restart, an expiry): the
        // page's subscriptions are gone until 'session:up'.
        if (lost) this.trigger('session:down');
      }
    },

    // The latest history position seen on a channel subscribed to by name
    // (keep it to recover later with setPosition), or undefined.
    getPosition: function (channel) {
      return this._positions.get(channel);
    },

    // Recover from `position` at the next subscribe to `channel`.
    setPosition: function (channel, position) {
      this._positions.set(channel, position);
    },

    // A subscribe reply's ext.history: the stream's position, and whether
    // the missed messages (which follow it) could be recovered. The page
    // hears of each attempt: client.bind('history:recovery', fn(channel,
    // recovered, reason)).
    _historyReply: function (channel, reply) {
      var history = reply.ext && reply.ext.history;
      if (!history || typeof history !== 'object') return;
      if (typeof history.position === 'string' && history.recovered !== true) {
        this._positions.set(channel, history.position);
      }
      if (typeof history.recovered === 'boolean') {
        if (!history.recovered) {
          writeLog('warn', 'Client', 'missed messages on ' + channel + ' are lost: ' + history.reason);
        }
        this.trigger('history:recovery', channel, history.recovered, history.reason || null);
      }
    },

    // The server said `reconnect: none` (a refused handshake, a kicked
    // client): nothing is retried. Pending calls fail; the page hears of it
    // through client.bind('session:ended', fn(error or null)).
    _sessionEnded: function (message) {
      var error = message && message.error ? BayeuxError.parse(message.error) : null;
      writeLog('warn', 'Client', 'the server ended the session' + (error ? ': ' + error : ''));
      this._state = DISCONNECTED;
      var calls = Array.from(this._openCalls);
      calls.forEach(function (settle) {
        settle({successful: false, error: error ? String(error) : '410::Session ended'});
      });
      this.trigger('session:ended', error);
    },

    // call('/service/x', data, {timeout: seconds}) -> a Promise of the reply
    // data; rejected with a Faye.Error when the server refuses the call, its
    // handler fails, the session ends, or no result comes within the timeout
    // (10 s by default; 0: wait on). See docs/browser.md.
    call: function (channel, data, options) {
      options = options || {};
      var self = this;
      var seconds = options.timeout === undefined ? 10 : options.timeout;
      return new Promise(function (resolve, reject) {
        if (!isChannelName(channel) || channel.indexOf('/service/') !== 0) {
          reject(new BayeuxError(405, [String(channel)], 'Not a /service channel'));
          return;
        }
        if (self._advice.reconnect === 'none') {
          reject(new BayeuxError(410, [], 'Session ended'));
          return;
        }
        var id = null;
        var timer = null;
        var settled = false;
        var settle = function (reply) {
          if (settled) return;
          settled = true;
          if (timer !== null) global.clearTimeout(timer);
          if (id !== null) self._calls.delete(id);
          self._openCalls.delete(settle);
          if (reply.successful) resolve(reply.data);
          else reject(BayeuxError.parse(reply.error));
        };
        self._openCalls.add(settle);
        if (seconds > 0) {
          timer = global.setTimeout(function () {
            settle({successful: false, error: '406::Call timed out'});
          }, 1000 * seconds);
        }
        self.connect(function () {
          if (settled) return;
          var message = {channel: channel, data: data, clientId: self._dispatcher.clientId};
          // The acknowledgement settles only a refusal; the result follows.
          self._sendMessage(message, {}, function (reply) {
            if (!reply.successful || reply.data !== undefined) settle(reply);
          });
          id = message.id;
          self._calls.set(id, settle);
        });
      });
    },

    // A call's result: {channel, id, successful, data}, for this client alone.
    _settleCall: function (message) {
      if (message.successful === undefined || message.data === undefined) return false;
      var settle = this._calls.get(message.id);
      if (!settle) return false;
      settle(message);
      return true;
    },

    _deliverMessage: function (message) {
      if (this._settleCall(message)) return;
      if (!message.channel || message.data === undefined) return;
      var history = message.ext && message.ext.history;
      if (history && typeof history.position === 'string' && this._channels.has(message.channel)) {
        this._positions.set(message.channel, history.position);
      }
      writeLog('debug', 'Client', function () {
        return 'message on ' + message.channel + ': ' + describe(message.data);
      });
      var roster = this._rosters.get(message.channel);
      if (roster && this._channels.has(message.channel)) roster.apply(message.data);
      this._channels.distribute(message);
    },

    _cycleConnection: function () {
      var self = this;
      this._connectRequest = false;
      global.setTimeout(function () { self.connect(); }, this._advice.interval);
    }
  };
  Object.assign(Client.prototype, Events);

  if (typeof global.addEventListener === 'function') {
    // No new sockets while the page goes away; a page brought back from the
    // back/forward cache may open them again.
    global.addEventListener('pagehide', function () { unloading = true; });
    global.addEventListener('pageshow', function () { unloading = false; });
  }

  var Faye = {
    VERSION: API_VERSION,
    implementation: 'bayeux-trio',
    Client: Client,
    Scheduler: Scheduler,
    Error: BayeuxError,
    logger: null
  };

  global.Faye = Faye;
  if (typeof module === 'object' && module && module.exports) module.exports = Faye;
})(typeof window !== 'undefined' ? window : this);
