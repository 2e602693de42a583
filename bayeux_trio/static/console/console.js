// The operator's console (docs/operations.md, "Console").
//
// Everything it shows comes from the admin API, called with the token the
// operator types into the sign-in form. The token lives in one variable of
// this closure: never in localStorage, sessionStorage, a cookie or a URL, so
// reloading the page forgets it. The live tail is a Bayeux session of the
// server's own client.js, admitted to any channel by a single-use ticket
// (POST <admin>/tail-ticket) that an extension puts in each handshake.
//
// The overview polls GET <admin>/stats once a second while it is shown and
// the tab is visible; the channel and client lists every two seconds while
// shown. Nothing polls in a hidden tab.
(function () {
  'use strict';

  var STATS_PERIOD = 1000;
  var LIST_PERIOD = 2000;
  var LIST_LIMIT = 100;
  var TAIL_KEEP = 200;
  var TICKET_FIELD = 'consoleTicket';
  var HANDSHAKE = '/meta/handshake';

  var state = {
    token: null, // the admin token: in memory only
    admin: '/admin',
    mount: null,
    origin: window.location.origin,
    view: 'overview',
    timer: null,
    lastTick: {},
    previous: null, // the previous /stats, for rates without history
    selectedClient: null,
    selectedChannel: null,
    tail: { client: null, clientId: null, pattern: null, subscription: null, ready: null },
    scriptLoaded: null
  };

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      var value = attrs[name];
      if (value === null || value === undefined || value === false) return;
      if (name === 'text') node.textContent = value;
      else if (name === 'className') node.className = value;
      else node.setAttribute(name, value === true ? '' : String(value));
    });
    (children || []).forEach(function (child) {
      node.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
    });
    return node;
  }

  // ------------------------------------------------------------ formatting

  function number(value) {
    if (typeof value !== 'number' || !isFinite(value)) return '–';
    return value.toLocaleString('en');
  }

  function rate(value) {
    if (typeof value !== 'number' || !isFinite(value)) return '–';
    if (value >= 100) return Math.round(value).toLocaleString('en');
    return (Math.round(value * 10) / 10).toLocaleString('en');
  }

  function bytes(value) {
    if (typeof value !== 'number' || !isFinite(value)) return '–';
    if (value >= 1 << 30) return (value / (1 << 30)).toFixed(2) + ' GiB';
    return (value / (1 << 20)).toFixed(1) + ' MiB';
  }

  function duration(seconds) {
    if (typeof seconds !== 'number' || !isFinite(seconds)) return '–';
    var s = Math.max(0, Math.floor(seconds));
    if (s < 60) return s + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm ' + (s % 60) + 's';
    if (s < 86400) return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm';
    return Math.floor(s / 86400) + 'd ' + Math.floor((s % 86400) / 3600) + 'h';
  }

  function clock() {
    return new Date().toLocaleTimeString('en-GB');
  }

  // ------------------------------------------------------------- admin API

  function ApiError(status, message) {
    this.status = status;
    this.message = message;
  }
  ApiError.prototype.toString = function () { return this.message; };

  // One admin call: resolves with the decoded answer, rejects with an
  // ApiError (status 0: the server could not be reached).
  function api(method, path, body) {
    if (state.token === null) return Promise.reject(new ApiError(401, 'signed out'));
    var headers = { Authorization: 'Bearer ' + state.token };
    var init = {
      method: method,
      headers: headers,
      cache: 'no-store',
      credentials: 'omit',
      redirect: 'error',
      referrerPolicy: 'no-referrer'
    };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    return fetch(state.admin + path, init).then(function (response) {
      return response.text().then(function (text) {
        var answer = null;
        try { answer = JSON.parse(text); } catch (ignored) { answer = null; }
        if (response.ok) return answer;
        var reason = answer && typeof answer.error === 'string' ? answer.error : response.statusText;
        throw new ApiError(response.status, reason + ' (' + response.status + ')');
      });
    }, function () {
      throw new ApiError(0, 'cannot reach the server');
    });
  }

  function refused(error) {
    return error instanceof ApiError && (error.status === 401 || error.status === 403);
  }

  // A call failed: a refused token signs out; anything else is shown.
  function failed(error) {
    if (refused(error)) {
      signOut('The server refused the token (' + error.message + '). Sign in again.');
      return;
    }
    setStatus('error', error.status === 0 ? 'unreachable' : 'error');
    showAppError(String(error.message || error));
  }

  function showAppError(text) {
    var banner = $('app-error');
    banner.textContent = text || '';
    banner.hidden = !text;
  }

  function setStatus(kind, text) {
    var status = $('status');
    status.setAttribute('data-state', kind);
    status.textContent = text;
  }

  // --------------------------------------------------------------- sign in

  function signIn(event) {
    event.preventDefault();
    var input = $('token');
    var token = input.value.trim();
    var admin = $('admin-path').value.trim().replace(/\/+$/, '');
    var error = $('signin-error');
    error.hidden = true;
    if (!token) {
      error.textContent = 'Paste the admin token first.';
      error.hidden = false;
      input.focus();
      return;
    }
    if (admin.charAt(0) !== '/') {
      error.textContent = 'The admin API path starts with a slash, like /admin.';
      error.hidden = false;
      $('admin-path').focus();
      return;
    }
    state.token = token;
    state.admin = admin;
    $('signin-button').disabled = true;
    api('GET', '/stats').then(function (stats) {
      input.value = ''; // not even the form keeps it
      $('signin-button').disabled = false;
      if (!stats || typeof stats !== 'object' || !stats.connections) {
        throw new ApiError(404, 'no console statistics at ' + admin + '/stats: is that the admin path?');
      }
      state.mount = stats.mount || '/faye';
      $('signin').hidden = true;
      $('app').hidden = false;
      $('sign-out').hidden = false;
      renderStats(stats);
      selectTab('overview', false);
      schedule(0);
    }).catch(function (err) {
      state.token = null;
      $('signin-button').disabled = false;
      var text;
      if (err instanceof ApiError && err.status === 403) text = 'Wrong token: the server refused it.';
      else if (err instanceof ApiError && err.status === 401) text = 'The server wants a token.';
      else if (err instanceof ApiError && err.status === 404) text = 'Nothing at ' + admin + '/stats: check the admin API path (--admin-path) and that --console-path is on.';
      else text = 'Could not sign in: ' + (err && err.message ? err.message : err);
      error.textContent = text;
      error.hidden = false;
      input.select();
      input.focus();
    });
  }

  function signOut(message) {
    state.token = null;
    state.previous = null;
    state.selectedClient = null;
    state.selectedChannel = null;
    if (state.timer !== null) clearTimeout(state.timer);
    state.timer = null;
    stopTail();
    // Clear every view: nothing the server said stays on the page.
    ['channels', 'clients', 'nodes'].forEach(function (id) {
      $(id).querySelector('tbody').textContent = '';
    });
    ['errors', 'members', 'client-details', 'client-subscriptions', 'tail'].forEach(function (id) {
      $(id).textContent = '';
    });
    document.querySelectorAll('[data-stat]').forEach(function (node) {
      node.textContent = '–';
      node.removeAttribute('data-value');
    });
    ['spark-publishes', 'spark-deliveries'].forEach(function (id) { $(id).textContent = ''; });
    $('node').textContent = '';
    $('client-card').hidden = true;
    $('members-card').hidden = true;
    $('nodes-card').hidden = true;
    showAppError('');
    $('app').hidden = true;
    $('sign-out').hidden = true;
    $('signin').hidden = false;
    setStatus('signed-out', 'signed out');
    var error = $('signin-error');
    error.textContent = message || '';
    error.hidden = !message;
    $('token').focus();
  }

  // ----------------------------------------------------------------- views

  var TABS = ['overview', 'channels', 'clients', 'publish'];

  function selectTab(name, focus) {
    state.view = name;
    TABS.forEach(function (tab) {
      var button = $('tab-' + tab);
      var selected = tab === name;
      button.setAttribute('aria-selected', selected ? 'true' : 'false');
      button.tabIndex = selected ? 0 : -1;
      $('view-' + tab).hidden = !selected;
      if (selected && focus) button.focus();
    });
    if (name === 'publish' && !$('publish-channel').value && state.tail.pattern) {
      $('publish-channel').value = state.tail.pattern;
    }
    state.lastTick = {};
    schedule(0);
  }

  // Roving focus: arrows, Home and End move between the tabs.
  function tabKeys(event) {
    var index = TABS.indexOf(state.view);
    var next = null;
    if (event.key === 'ArrowRight') next = (index + 1) % TABS.length;
    else if (event.key === 'ArrowLeft') next = (index + TABS.length - 1) % TABS.length;
    else if (event.key === 'Home') next = 0;
    else if (event.key === 'End') next = TABS.length - 1;
    if (next === null) return;
    event.preventDefault();
    selectTab(TABS[next], true);
  }

  // One timer drives every refresh, one request at a time, so a slow server
  // never has requests pile up.
  function schedule(delay) {
    if (state.timer !== null) clearTimeout(state.timer);
    state.timer = setTimeout(tick, delay);
  }

  function due(what, period) {
    var now = Date.now();
    if (state.lastTick[what] && now - state.lastTick[what] < period - 50) return false;
    state.lastTick[what] = now;
    return true;
  }

  function tick() {
    state.timer = null;
    if (state.token === null) return;
    if (document.hidden) return; // visibilitychange starts it again
    var work = null;
    if (state.view === 'overview' && due('stats', STATS_PERIOD)) work = refreshStats();
    else if (state.view === 'channels' && due('channels', LIST_PERIOD)) work = refreshChannels();
    else if (state.view === 'clients' && due('clients', LIST_PERIOD)) work = refreshClients();
    Promise.resolve(work).then(function () {
      if (work !== null) { showAppError(''); setStatus('live', 'live'); }
    }, failed).then(function () {
      if (state.token !== null && state.timer === null) schedule(state.view === 'overview' ? STATS_PERIOD : 500);
    });
  }

  // -------------------------------------------------------------- overview

  function refreshStats() {
    return api('GET', '/stats').then(renderStats);
  }

  function setStat(name, value, text) {
    document.querySelectorAll('[data-stat="' + name + '"]').forEach(function (node) {
      node.textContent = text === undefined ? number(value) : text;
      if (value === null || value === undefined) node.removeAttribute('data-value');
      else node.setAttribute('data-value', String(value));
    });
  }

  function renderStats(stats) {
    var connections = stats.connections || {};
    var totals = stats.totals || {};
    var errors = totals.errors || {};
    var total = 0;
    Object.keys(connections).forEach(function (kind) { total += connections[kind] || 0; });
    $('node').textContent = stats.node ? 'node ' + stats.node : '';
    setStat('connections.total', total);
    ['websocket', 'eventsource', 'http'].forEach(function (kind) {
      setStat('connections.' + kind, connections[kind] || 0);
    });
    ['sessions', 'subscriptions', 'channels', 'held_connects', 'queued'].forEach(function (name) {
      setStat(name, stats[name]);
    });
    ['publishes', 'deliveries', 'handshakes', 'overflows'].forEach(function (name) {
      setStat('totals.' + name, totals[name]);
    });
    setStat('rss', stats.rss_bytes, bytes(stats.rss_bytes));
    setStat('uptime', stats.uptime, duration(stats.uptime));
    setStat('engine', stats.engine, stats.engine || '–');

    var codes = Object.keys(errors).sort();
    var errorCount = 0;
    var list = $('errors');
    list.textContent = '';
    codes.forEach(function (code) {
      errorCount += errors[code] || 0;
      list.appendChild(el('li', { 'data-code': code, 'data-value': errors[code], text: code + ' × ' + number(errors[code]) }));
    });
    setStat('errors.total', errorCount);

    var history = Array.isArray(stats.history) ? stats.history : [];
    var publishes = null;
    var deliveries = null;
    if (history.length) {
      publishes = history[history.length - 1][1];
      deliveries = history[history.length - 1][2];
    } else if (state.previous && stats.time > state.previous.time) {
      var span = stats.time - state.previous.time;
      publishes = ((totals.publishes || 0) - ((state.previous.totals || {}).publishes || 0)) / span;
      deliveries = ((totals.deliveries || 0) - ((state.previous.totals || {}).deliveries || 0)) / span;
    }
    setStat('rate.publishes', publishes, rate(publishes));
    setStat('rate.deliveries', deliveries, rate(deliveries));
    sparkline($('spark-publishes'), history, 1);
    sparkline($('spark-deliveries'), history, 2);
    renderNodes(stats.nodes);
    state.previous = stats;
  }

  var SVG = 'http://www.w3.org/2000/svg';

  // history: [[t, publishes/s, deliveries/s], ...] oldest first; drawn into a
  // 300 x 40 viewBox, the highest point at the top.
  function sparkline(svg, history, column) {
    svg.textContent = '';
    if (history.length < 2) return;
    var first = history[0][0];
    var last = history[history.length - 1][0];
    var width = Math.max(last - first, 1);
    var top = 1;
    history.forEach(function (row) { top = Math.max(top, row[column] || 0); });
    var points = history.map(function (row) {
      var x = ((row[0] - first) / width) * 300;
      var y = 39 - ((row[column] || 0) / top) * 37;
      return x.toFixed(1) + ',' + y.toFixed(1);
    });
    var area = document.createElementNS(SVG, 'polygon');
    area.setAttribute('points', '0,40 ' + points.join(' ') + ' 300,40');
    var line = document.createElementNS(SVG, 'polyline');
    line.setAttribute('points', points.join(' '));
    svg.appendChild(area);
    svg.appendChild(line);
    var label = svg.getAttribute('aria-label').split(' (')[0];
    svg.setAttribute('aria-label', label + ' (peak ' + rate(top) + ')');
  }

  function renderNodes(nodes) {
    var card = $('nodes-card');
    if (!Array.isArray(nodes)) {
      card.hidden = true;
      return;
    }
    card.hidden = false;
    var body = $('nodes').querySelector('tbody');
    body.textContent = '';
    nodes.forEach(function (node) {
      var health = el('span', {
        className: 'pill',
        'data-state': node.healthy ? 'ok' : 'bad',
        text: node.healthy ? 'healthy' : 'unhealthy'
      });
      var name = el('td', {}, [el('code', { text: node.node })]);
      if (node.self) name.appendChild(el('span', { className: 'count', text: ' (this node)' }));
      body.appendChild(el('tr', { 'data-node': node.node }, [
        name,
        el('td', {}, [health]),
        el('td', { className: 'num', text: typeof node.lag_ms === 'number' ? number(Math.round(node.lag_ms)) + ' ms' : '–' }),
        el('td', { className: 'num', text: number(node.sessions) }),
        el('td', { className: 'num', text: number(node.connections) }),
        el('td', { className: 'num', text: typeof node.age_s === 'number' ? duration(node.age_s) + ' ago' : '–' })
      ]));
    });
  }

  // -------------------------------------------------------------- channels

  function query(params) {
    return Object.keys(params).filter(function (name) {
      return params[name] !== '' && params[name] !== null && params[name] !== undefined;
    }).map(function (name) {
      return encodeURIComponent(name) + '=' + encodeURIComponent(params[name]);
    }).join('&');
  }

  // Re-rendering a table must not lose the keyboard's place: the focused
  // button is found again by its data-key.
  function keepFocus(container, render) {
    var active = document.activeElement;
    var key = active && container.contains(active) ? active.getAttribute('data-key') : null;
    render();
    if (key === null) return;
    var again = container.querySelector('[data-key="' + CSS.escape(key) + '"]');
    if (again) again.focus();
  }

  function refreshChannels() {
    var q = $('channel-search').value.trim();
    var work = api('GET', '/channels?' + query({ summary: 1, q: q, limit: LIST_LIMIT })).then(function (answer) {
      renderChannels(answer, q);
    });
    if (state.selectedChannel === null) return work;
    return work.then(refreshMembers);
  }

  function renderChannels(answer, q) {
    var channels = (answer && answer.channels) || [];
    var body = $('channels').querySelector('tbody');
    keepFocus(body, function () {
      body.textContent = '';
      channels.forEach(function (entry) {
        var presence;
        if (entry.presence) {
          presence = el('button', {
            type: 'button',
            className: 'link',
            'data-key': 'members:' + entry.channel,
            'data-channel': entry.channel,
            'aria-label': 'members of ' + entry.channel,
            text: typeof entry.members === 'number' ? number(entry.members) + ' members' : 'members'
          });
        } else {
          presence = el('span', { className: 'count', text: '–' });
        }
        body.appendChild(el('tr', {
          'data-channel': entry.channel,
          'aria-selected': entry.channel === state.selectedChannel ? 'true' : null
        }, [
          el('td', {}, [el('code', { text: entry.channel })]),
          el('td', { className: 'num', 'data-value': entry.subscribers, text: number(entry.subscribers) }),
          el('td', {}, [presence])
        ]));
      });
    });
    var total = typeof answer.total === 'number' ? answer.total : channels.length;
    $('channels-count').textContent = channels.length < total
      ? 'busiest ' + channels.length + ' of ' + number(total)
      : number(total) + (total === 1 ? ' channel' : ' channels');
    var empty = $('channels-empty');
    empty.hidden = channels.length > 0;
    $('channels').parentNode.hidden = channels.length === 0;
    empty.textContent = q
      ? 'No channel matches “' + q + '”.'
      : 'No subscriptions yet. Channels show here once a client subscribes through ' +
        state.origin + state.mount + ' (client.subscribe(\'/chat/lobby\', ...)).';
  }

  function showMembers(channel) {
    state.selectedChannel = channel;
    $('channels').querySelectorAll('tbody tr').forEach(function (row) {
      row.setAttribute('aria-selected', row.getAttribute('data-channel') === channel ? 'true' : 'false');
    });
    refreshMembers().catch(failed);
  }

  function refreshMembers() {
    var channel = state.selectedChannel;
    return api('GET', '/presence?' + query({ channel: channel })).then(function (answer) {
      if (channel !== state.selectedChannel) return;
      var members = (answer && answer.members) || [];
      $('members-card').hidden = false;
      $('members-channel').textContent = channel;
      $('members-count').textContent = '(' + number(members.length) + ')';
      var list = $('members');
      list.textContent = '';
      members.forEach(function (member) {
        var info = member.info && typeof member.info === 'object' ? ' ' + JSON.stringify(member.info) : '';
        list.appendChild(el('li', { 'data-user': member.user }, [
          el('strong', { text: String(member.user) }),
          el('span', { className: 'count', text: info })
        ]));
      });
      $('members-empty').hidden = members.length > 0;
    }, function (error) {
      if (refused(error)) throw error;
      $('members-card').hidden = false;
      $('members-channel').textContent = channel;
      $('members-count').textContent = '';
      $('members').textContent = '';
      $('members-empty').hidden = false;
      $('members-empty').textContent = 'No member list: ' + error.message;
    });
  }

  // --------------------------------------------------------------- clients

  function refreshClients() {
    var q = $('client-search').value.trim();
    var work = api('GET', '/clients?' + query({ q: q, limit: LIST_LIMIT })).then(function (answer) {
      renderClients(answer, q);
    });
    if (state.selectedClient === null) return work;
    return work.then(refreshClient);
  }

  function renderClients(answer, q) {
    var clients = (answer && answer.clients) || [];
    var body = $('clients').querySelector('tbody');
    keepFocus(body, function () {
      body.textContent = '';
      clients.forEach(function (client) {
        var row = el('tr', {
          'data-client': client.id,
          'aria-selected': client.id === state.selectedClient ? 'true' : null,
          className: client.id === state.tail.clientId ? 'self' : null
        }, [
          el('td', {}, [el('button', {
            type: 'button',
            className: 'link',
            'data-key': 'client:' + client.id,
            'data-id': client.id,
            'aria-label': 'client ' + client.id,
            title: client.id,
            text: client.id
          })]),
          el('td', { text: client.user === null || client.user === undefined ? '–' : String(client.user) }),
          el('td', { text: client.address || '–' }),
          el('td', { text: client.connection || '–' }),
          el('td', { className: 'num', text: number((client.subscriptions || []).length) }),
          el('td', { className: 'num', text: number(client.queued) }),
          el('td', { className: 'num', text: duration(client.age) })
        ]);
        body.appendChild(row);
      });
    });
    var total = typeof answer.total === 'number' ? answer.total : clients.length;
    $('clients-count').textContent = clients.length < total
      ? 'first ' + clients.length + ' of ' + number(total)
      : number(total) + (total === 1 ? ' client' : ' clients');
    var empty = $('clients-empty');
    empty.hidden = clients.length > 0;
    $('clients').parentNode.hidden = clients.length === 0;
    empty.textContent = q
      ? 'No client matches “' + q + '” (searched: clientId prefix, user, address).'
      : 'No clients connected. Point a client at ' + state.origin + state.mount +
        ' (new Faye.Client(\'' + state.origin + state.mount + '\')) and it shows here.';
  }

  function selectClient(id) {
    state.selectedClient = id;
    $('client-message').textContent = '';
    $('clients').querySelectorAll('tbody tr').forEach(function (row) {
      row.setAttribute('aria-selected', row.getAttribute('data-client') === id ? 'true' : 'false');
    });
    refreshClient().catch(failed);
  }

  function refreshClient() {
    var id = state.selectedClient;
    return api('GET', '/clients/' + encodeURIComponent(id)).then(function (client) {
      if (id === state.selectedClient) renderClient(client);
    }, function (error) {
      if (refused(error)) throw error;
      if (error.status !== 404 || id !== state.selectedClient) throw error;
      $('client-card').hidden = false;
      $('client-id').textContent = id;
      $('client-details').textContent = '';
      $('client-subscriptions').textContent = '';
      $('kick').disabled = true;
      if (!$('client-message').textContent) {
        $('client-message').textContent = 'This client is gone (disconnected, or its session expired).';
      }
    });
  }

  function renderClient(client) {
    $('client-card').hidden = false;
    $('client-id').textContent = client.id;
    $('kick').disabled = false;
    var details = $('client-details');
    details.textContent = '';
    [
      ['Transport', client.connection || 'none between two connects'],
      ['State', client.state],
      ['User', client.user === null || client.user === undefined ? '–' : String(client.user)],
      ['Address', client.address || '–'],
      ['Age', duration(client.age)],
      ['Queue', number(client.queued) + ' waiting'],
      ['Held connect', client.held ? 'yes' : 'no'],
      ['Expires in', typeof client.expires_in === 'number' ? duration(client.expires_in) : '–']
    ].forEach(function (pair) {
      details.appendChild(el('dt', { text: pair[0] }));
      details.appendChild(el('dd', { 'data-field': pair[0].toLowerCase(), text: pair[1] }));
    });
    var subscriptions = $('client-subscriptions');
    subscriptions.textContent = '';
    (client.subscriptions || []).forEach(function (channel) {
      subscriptions.appendChild(el('li', { text: channel }));
    });
    if (!(client.subscriptions || []).length) subscriptions.appendChild(el('li', { className: 'count', text: 'none' }));
  }

  function askKick() {
    if (state.selectedClient === null) return;
    $('confirm-id').textContent = state.selectedClient;
    var dialog = $('confirm-kick');
    dialog.returnValue = '';
    dialog.showModal();
  }

  function kickConfirmed() {
    var dialog = $('confirm-kick');
    if (dialog.returnValue !== 'kick' || state.selectedClient === null) {
      $('kick').focus();
      return;
    }
    var id = state.selectedClient;
    api('DELETE', '/clients/' + encodeURIComponent(id)).then(function () {
      $('client-message').textContent = 'Disconnected ' + id + ' at ' + clock() + '.';
    }, function (error) {
      if (refused(error)) throw error;
      $('client-message').textContent = 'Could not disconnect: ' + error.message;
    }).catch(failed).then(function () {
      state.lastTick = {};
      schedule(0);
      $('kick').focus();
    });
  }

  // --------------------------------------------------------------- publish

  function publish(event) {
    event.preventDefault();
    var result = $('publish-result');
    var channel = $('publish-channel').value.trim();
    var data;
    try {
      data = JSON.parse($('publish-data').value);
    } catch (error) {
      result.textContent = 'The data is not JSON: ' + error.message;
      result.setAttribute('data-state', 'error');
      $('publish-data').focus();
      return;
    }
    if (!channel) {
      result.textContent = 'Name a channel, like /chat/lobby.';
      result.setAttribute('data-state', 'error');
      $('publish-channel').focus();
      return;
    }
    $('publish').disabled = true;
    result.textContent = 'Publishing…';
    result.removeAttribute('data-state');
    // Watch the channel first (unless the tail already covers it), so the
    // message shows up arriving.
    var watching = state.tail.subscription && covers(state.tail.pattern, channel)
      ? state.tail.ready
      : watch(channel);
    Promise.resolve(watching).catch(function () { return null; }).then(function () {
      return api('POST', '/publish', { channel: channel, data: data });
    }).then(function () {
      result.textContent = 'Published to ' + channel + ' at ' + clock() + '.';
      result.setAttribute('data-state', 'ok');
    }, function (error) {
      if (refused(error)) return failed(error);
      result.textContent = 'Not published: ' + error.message;
      result.setAttribute('data-state', 'error');
    }).then(function () {
      $('publish').disabled = false;
    });
  }

  // Does a Bayeux pattern (/a/*, /a/**) match a channel name?
  function covers(pattern, channel) {
    if (!pattern) return false;
    if (pattern === channel) return true;
    var p = pattern.split('/');
    var c = channel.split('/');
    for (var i = 1; i < p.length; i++) {
      if (p[i] === '**') return c.length > i;
      if (i >= c.length) return false;
      if (p[i] !== '*' && p[i] !== c[i]) return false;
    }
    return p.length === c.length;
  }

  function setTail(kind, text) {
    var pill = $('tail-state');
    pill.setAttribute('data-state', kind);
    pill.textContent = text;
  }

  function loadClientScript() {
    if (state.scriptLoaded) return state.scriptLoaded;
    state.scriptLoaded = new Promise(function (resolve, reject) {
      if (window.Faye && window.Faye.Client) return resolve();
      var script = el('script', { src: state.mount + '/client.js' });
      script.addEventListener('load', function () { resolve(); });
      script.addEventListener('error', function () {
        state.scriptLoaded = null;
        reject(new Error('could not load ' + state.mount + '/client.js'));
      });
      document.head.appendChild(script);
    });
    return state.scriptLoaded;
  }

  // The tail's own Bayeux session: each handshake carries a fresh ticket
  // (single use), so a rehandshake (a server restart) gets in again.
  function tailClient() {
    if (state.tail.client) return state.tail.client;
    var client = new window.Faye.Client(state.mount, { retry: 2 });
    client.addExtension({
      outgoing: function (message, callback) {
        if (message.channel !== HANDSHAKE) return callback(message);
        api('POST', '/tail-ticket').then(function (answer) {
          message.ext = Object.assign({}, message.ext);
          message.ext[TICKET_FIELD] = answer.ticket;
          callback(message);
        }, function (error) {
          setTail('bad', 'no ticket');
          if (refused(error)) failed(error);
          callback(message); // the server refuses it; the client tries again
        });
      },
      incoming: function (message, callback) {
        if (message.channel === HANDSHAKE) {
          if (message.successful) state.tail.clientId = message.clientId;
          else setTail('bad', 'refused: ' + String(message.error || 'handshake failed'));
        }
        callback(message);
      }
    });
    // A refused ticket or a kick ends the session for good: the next Watch
    // starts a new client (and a new ticket).
    client.bind('session:ended', function () {
      if (state.tail.client !== client) return;
      state.tail.client = null;
      state.tail.clientId = null;
      state.tail.subscription = null;
      setTail('bad', 'ended by the server');
    });
    client.bind('transport:down', function () { if (state.tail.pattern) setTail('pending', 'reconnecting'); });
    client.bind('transport:up', function () { if (state.tail.pattern && state.tail.subscription) setTail('live', 'live'); });
    state.tail.client = client;
    return client;
  }

  function watch(pattern) {
    stopSubscription();
    state.tail.pattern = pattern;
    $('tail-channel').value = pattern;
    $('tail-stop').disabled = false;
    setTail('pending', 'subscribing');
    var ready = loadClientScript().then(function () {
      if (state.tail.pattern !== pattern) return null;
      var subscription = tailClient().subscribe(pattern);
      subscription.withChannel(function (channel, data) { addTailLine(channel, data); });
      state.tail.subscription = subscription;
      return subscription.then(function () {
        if (state.tail.pattern === pattern) setTail('live', 'watching ' + pattern);
      });
    }).catch(function (error) {
      if (state.tail.pattern === pattern) setTail('bad', 'not watching: ' + (error && error.message ? error.message : error));
      throw error;
    });
    state.tail.ready = ready;
    return ready;
  }

  function stopSubscription() {
    if (state.tail.subscription) state.tail.subscription.cancel();
    state.tail.subscription = null;
    state.tail.pattern = null;
    state.tail.ready = null;
  }

  function stopTail() {
    stopSubscription();
    if (state.tail.client) state.tail.client.disconnect();
    state.tail.client = null;
    state.tail.clientId = null;
    $('tail-stop').disabled = true;
    setTail('off', 'off');
  }

  function addTailLine(channel, data) {
    var list = $('tail');
    var text;
    try { text = JSON.stringify(data, null, 1); } catch (ignored) { text = String(data); }
    list.insertBefore(el('li', { 'data-channel': channel }, [
      el('time', { text: clock() }),
      el('span', { className: 'channel', text: channel }),
      el('pre', { text: text })
    ]), list.firstChild);
    while (list.children.length > TAIL_KEEP) list.removeChild(list.lastChild);
    $('tail-empty').hidden = true;
  }

  // ---------------------------------------------------------------- wiring

  function debounce(fn, ms) {
    var pending = null;
    return function () {
      if (pending !== null) clearTimeout(pending);
      pending = setTimeout(function () { pending = null; fn(); }, ms);
    };
  }

  function start() {
    $('signin-form').addEventListener('submit', signIn);
    $('admin-path').addEventListener('input', function () {
      $('admin-path-shown').textContent = $('admin-path').value.trim() || '/admin';
    });
    $('sign-out').addEventListener('click', function () { signOut(''); });
    TABS.forEach(function (tab) {
      var button = $('tab-' + tab);
      button.addEventListener('click', function () { selectTab(tab, false); });
      button.addEventListener('keydown', tabKeys);
    });
    var searchAgain = debounce(function () { state.lastTick = {}; schedule(0); }, 250);
    $('channel-search').addEventListener('input', searchAgain);
    $('client-search').addEventListener('input', searchAgain);
    $('channels').addEventListener('click', function (event) {
      var button = event.target.closest('button[data-channel]');
      if (button) showMembers(button.getAttribute('data-channel'));
    });
    $('clients').addEventListener('click', function (event) {
      var button = event.target.closest('button[data-id]');
      if (button) selectClient(button.getAttribute('data-id'));
    });
    $('kick').addEventListener('click', askKick);
    $('confirm-kick').addEventListener('close', kickConfirmed);
    $('publish-form').addEventListener('submit', publish);
    $('tail-form').addEventListener('submit', function (event) {
      event.preventDefault();
      var pattern = $('tail-channel').value.trim();
      if (pattern) watch(pattern).catch(function () { return null; });
    });
    $('tail-stop').addEventListener('click', stopTail);
    document.addEventListener('visibilitychange', function () {
      if (!document.hidden && state.token !== null) { state.lastTick = {}; schedule(0); }
    });
    $('token').focus();
  }

  start();
}());
