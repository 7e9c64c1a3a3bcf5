// The colony_assign dashboard. Plain JavaScript, no library, nothing fetched but this
// coordinator's own routes. Data arrives as server-sent events on /ui/events (one snapshot a
// second at most, shared by every viewer of the replica); a process's details and logs, and a
// workflow not in the snapshot, are fetched from the /v1 API when opened.
//
// Login: the admin token is kept in sessionStorage (this tab only) and sent as
// `Authorization: Bearer` on every request, the event stream included (read with fetch(), since
// EventSource cannot send headers), so it never appears in a URL. A link may carry it in the
// fragment (`/ui#token=...` or `/ui#/colony/c?token=...`): fragments are never sent to the
// server, and the page removes it from the address bar at once.
'use strict';

const TOKEN_KEY = 'colony_assign.admin_token';
const STATES = ['waiting', 'running', 'success', 'failed', 'cancelled'];

let snapshot = null;
let stream = null; // the AbortController of the open event stream
let retryMs = 1000;
let detail = { key: null, data: null, error: null }; // what the process/workflow page fetched

// ---- DOM helpers: data goes in as text nodes, never as markup.

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function s(tag, attrs, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'onclick') el.addEventListener('click', v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

function table(headers, rows, empty) {
  if (!rows.length) return h('p', { class: 'empty' }, empty);
  return h('table', {},
    h('thead', {}, h('tr', {}, headers.map(([label, cls]) => h('th', { class: cls }, label)))),
    h('tbody', {}, rows));
}

// ---- Formatting.

function stateName(state) { return STATES[state] || String(state); }

function stateBadge(state) {
  const name = stateName(state);
  return h('span', { class: `badge state-${name}`, 'data-state': name }, name);
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return '';
  const x = Math.max(0, seconds);
  if (x < 1) return `${Math.round(x * 1000)} ms`;
  if (x < 120) return `${Math.round(x)} s`;
  if (x < 7200) return `${Math.round(x / 60)} min`;
  if (x < 172800) return `${Math.round(x / 3600)} h`;
  return `${Math.round(x / 86400)} d`;
}

// How long before the snapshot `text` (RFC 3339) was.
function ago(text) {
  if (!text) return '';
  const at = Date.parse(text);
  const now = snapshot ? snapshot.at_ms : Date.now();
  return Number.isNaN(at) ? text : `${age((now - at) / 1000)} ago`;
}

function fmt(n, digits) {
  if (n === null || n === undefined) return '';
  return Number(n).toLocaleString('en-US', { maximumFractionDigits: digits ?? 0 });
}

// ---- Login and the event stream.

function token() { return sessionStorage.getItem(TOKEN_KEY); }

function takeTokenFromFragment() {
  const match = location.hash.match(/[#?&]token=([^&]*)/);
  if (!match) return;
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
  let rest = location.hash.replace(/[?&]?token=[^&]*/, '');
  if (rest === '#' || rest === '') rest = '#/';
  history.replaceState(null, '', location.pathname + location.search + rest);
}

function setStatus(text, cls) {
  const el = document.getElementById('status');
  el.textContent = text;
  el.className = `status ${cls}`;
}

function showLogin(message) {
  if (stream) stream.abort();
  stream = null;
  snapshot = null;
  document.getElementById('login').hidden = false;
  document.getElementById('main').hidden = true;
  document.getElementById('logout').hidden = true;
  document.getElementById('login-error').textContent = message || '';
  document.getElementById('nav').replaceChildren();
  setStatus('not connected', 'status-off');
  document.getElementById('token').focus();
}

function hideLogin() {
  document.getElementById('login').hidden = true;
  document.getElementById('main').hidden = false;
  document.getElementById('logout').hidden = false;
}

// The message of an error answer ({"error": {"message"}}), or the status text.
async function errorMessage(response) {
  try {
    const body = await response.json();
    return body.error.message;
  } catch (_) {
    return `${response.status} ${response.statusText}`;
  }
}

async function refused(response) {
  const why = await errorMessage(response);
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin(response.status === 403
    ? `That is not an admin token (${why}). The dashboard needs an admin token from colony_assign.add_admin().`
    : `The token was refused: ${why}. Check that you pasted the whole admin token.`);
}

async function connect() {
  const t = token();
  if (!t) return showLogin('');
  if (stream) stream.abort();
  const abort = new AbortController();
  stream = abort;
  setStatus('connecting', 'status-wait');
  let response;
  try {
    response = await fetch('/ui/events', {
      headers: { Authorization: `Bearer ${t}`, Accept: 'text/event-stream' },
      cache: 'no-store',
      signal: abort.signal,
    });
  } catch (_) {
    if (!abort.signal.aborted) reconnectLater(abort);
    return;
  }
  if (response.status === 401 || response.status === 403) return refused(response);
  if (!response.ok) {
    setStatus(`error ${response.status}`, 'status-off');
    return reconnectLater(abort);
  }
  hideLogin();
  setStatus('live', 'status-live');
  retryMs = 1000;
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (onFrame(frame) === 'revoked') return;
      }
    }
  } catch (_) {
    // The connection broke; reconnect below.
  }
  if (!abort.signal.aborted) reconnectLater(abort);
}

function reconnectLater(abort) {
  if (stream !== abort) return;
  setStatus('reconnecting', 'status-wait');
  setTimeout(() => { if (stream === abort) connect(); }, retryMs);
  retryMs = Math.min(retryMs * 2, 10000);
}

// One server-sent event: `event:` and `data:` lines (comments, the keep-alives, start with ':').
function onFrame(frame) {
  let event = 'message';
  const data = [];
  for (const line of frame.split('\n')) {
    if (line.startsWith('event:')) event = line.slice(6).trim();
    else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
  }
  if (event === 'revoked') {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin('The token was removed (colony_assign.remove_admin). Log in with another admin token.');
    return 'revoked';
  }
  if (event === 'snapshot' && data.length) {
    snapshot = JSON.parse(data.join('\n'));
    render();
  }
  return event;
}

// ---- Routes: #/ (overview), #/colony/NAME, #/process/ID, #/workflow/ID.

function route() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  return { page: parts[0] || 'overview', arg: parts[1] };
}

function render() {
  if (!snapshot) return;
  const { page, arg } = route();
  const nav = document.getElementById('nav');
  nav.replaceChildren(
    h('a', { href: '#/', class: page === 'overview' ? 'current' : null }, 'Overview'),
    ...snapshot.colonies.map(c => h('a', {
      href: `#/colony/${encodeURIComponent(c.colony.name)}`,
      class: page === 'colony' && arg === c.colony.name ? 'current' : null,
    }, c.colony.name)));
  const main = document.getElementById('main');
  let content;
  if (page === 'colony') content = colonyPage(arg);
  else if (page === 'process') content = processPage(arg);
  else if (page === 'workflow') content = workflowPage(arg);
  else content = overviewPage();
  main.replaceChildren(...[
    snapshot.error ? h('div', { class: 'banner error' }, `Last refresh failed: ${snapshot.error}`) : null,
    content].filter(Boolean));
}

function meta() {
  return h('div', { class: 'meta' },
    `replica ${snapshot.replica} · LISTEN ${snapshot.listener ? 'connected' : 'DISCONNECTED'} · updated `,
    h('span', { id: 'updated' }, new Date(snapshot.at_ms).toLocaleTimeString()));
}

// ---- Overview: colonies, backlog, executors, throughput and latency.

function overviewPage() {
  const hist = snapshot.history;
  return h('div', {},
    h('h1', {}, 'Overview'), meta(),
    h('div', { class: 'panel', id: 'colonies' }, h('h2', {}, 'Colonies'), coloniesTable()),
    h('div', { class: 'grid' },
      h('div', { class: 'panel', id: 'throughput' }, h('h2', {}, 'Throughput on this replica (per second, last 5 minutes)'),
        chart(hist, [['assigned', 'long-polls assigned', 's-assigned'], ['closed', 'closed', 's-closed'],
          ['notifications', 'notifications', 's-notifications']], '/s')),
      h('div', { class: 'panel', id: 'latency' }, h('h2', {}, 'Wake latency on this replica (ms)'),
        chart(hist, [['wake_p50_ms', 'notification → assign, median', 's-wake50'],
          ['wake_max_ms', 'notification → assign, worst', 's-wakemax'],
          ['assign_mean_ms', 'assign call, mean', 's-assign']], ' ms'))),
    h('div', { class: 'panel', id: 'backlog' }, h('h2', {}, 'Backlog per (executor type, location)'),
      backlogTable(snapshot.colonies, true)),
    h('div', { class: 'panel', id: 'executors' }, h('h2', {}, 'Executors'),
      executorsTable(snapshot.colonies, true)));
}

function coloniesTable() {
  const rows = snapshot.colonies.map(c => {
    const alive = c.executors.filter(e => e.alive).length;
    const oldest = Math.max(0, ...c.queues.map(q => q.oldest_age_s || 0));
    const name = c.colony.name;
    return h('tr', { class: 'clickable colony-row', 'data-colony': name,
      onclick: () => { location.hash = `#/colony/${encodeURIComponent(name)}`; } },
    h('td', {}, h('a', { href: `#/colony/${encodeURIComponent(name)}` }, name), ' ',
      c.colony.paused ? h('span', { class: 'badge paused' }, 'paused') : null, ' ',
      c.colony.strict ? h('span', { class: 'badge strict' }, 'strict') : null),
    h('td', { class: 'num' }, `${alive} / ${c.stats.executors}`),
    ['waiting', 'blocked', 'running', 'succeeded', 'failed', 'cancelled'].map(k =>
      h('td', { class: 'num' }, fmt(c.stats[k]))),
    h('td', { class: 'num' }, c.stats.waiting ? age(oldest) : ''));
  });
  return table([['colony'], ['executors alive', 'num'], ['waiting', 'num'], ['blocked', 'num'],
    ['running', 'num'], ['succeeded', 'num'], ['failed', 'num'], ['cancelled', 'num'],
    ['oldest waiting', 'num']], rows, 'No colonies this token reaches.');
}

function backlogTable(colonies, withColony) {
  const rows = colonies.flatMap(c => c.queues.map(q => h('tr', { class: 'backlog-row' },
    withColony ? h('td', {}, c.colony.name) : null,
    h('td', {}, q.executor_type),
    h('td', {}, q.location ?? h('span', { class: 'empty' }, 'any')),
    h('td', { class: 'num' }, fmt(q.waiting)),
    h('td', { class: 'num' }, age(q.oldest_age_s)))));
  return table([withColony ? ['colony'] : null, ['executor type'], ['location'], ['waiting', 'num'],
    ['oldest age', 'num']].filter(Boolean), rows, 'Nothing is waiting.');
}

function executorsTable(colonies, withColony) {
  const rows = colonies.flatMap(c => c.executors.map(e => h('tr', { class: 'executor-row', 'data-executor': e.name },
    withColony ? h('td', {}, c.colony.name) : null,
    h('td', {}, e.name),
    h('td', {}, e.executor_type),
    h('td', {}, e.location ?? ''),
    h('td', {}, h('span', { class: `badge ${e.alive ? 'alive' : 'stale'}` }, e.alive ? 'alive' : 'stale')),
    h('td', { class: 'num' }, fmt(e.running)),
    h('td', {}, e.last_seen ? ago(e.last_seen) : 'never'))));
  return table([withColony ? ['colony'] : null, ['name'], ['type'], ['location'], ['liveness'],
    ['running', 'num'], ['last seen']].filter(Boolean), rows, 'No executors.');
}

// A line chart of some of the history's measures; a null leaves a gap.
function chart(hist, measures, unit) {
  const W = 560, H = 170, L = 44, R = 8, T = 8, B = 22;
  const n = Math.max(2, hist.assigned.length);
  let max = 0;
  for (const [key] of measures) for (const v of hist[key]) if (v !== null && v > max) max = v;
  max = max > 0 ? niceCeil(max) : 1;
  const x = i => L + (W - L - R) * (i + (n - hist[measures[0][0]].length)) / (n - 1);
  const y = v => T + (H - T - B) * (1 - v / max);
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, width: '100%', role: 'img' },
    s('line', { class: 'axis', x1: L, y1: y(0), x2: W - R, y2: y(0) }),
    s('line', { class: 'axis', x1: L, y1: y(max), x2: W - R, y2: y(max) }),
    s('line', { class: 'axis', x1: L, y1: y(max / 2), x2: W - R, y2: y(max / 2) }),
    s('text', { x: L - 4, y: y(max) + 4, 'text-anchor': 'end' }, fmt(max, 2)),
    s('text', { x: L - 4, y: y(max / 2) + 4, 'text-anchor': 'end' }, fmt(max / 2, 2)),
    s('text', { x: L - 4, y: y(0) + 4, 'text-anchor': 'end' }, '0'),
    s('text', { x: L, y: H - 6 }, `−${age(n - 1)}`),
    s('text', { x: W - R, y: H - 6, 'text-anchor': 'end' }, 'now'));
  for (const [key, , cls] of measures) {
    let points = [];
    const flush = () => {
      if (points.length > 1) svg.append(s('polyline', { class: `line ${cls}`, points: points.join(' ') }));
      else if (points.length === 1) {
        const [px, py] = points[0].split(',');
        svg.append(s('circle', { class: `line ${cls}`, cx: px, cy: py, r: 1.5 }));
      }
      points = [];
    };
    hist[key].forEach((v, i) => {
      if (v === null) flush();
      else points.push(`${x(i).toFixed(1)},${y(v).toFixed(1)}`);
    });
    flush();
  }
  const last = key => {
    const values = hist[key].filter(v => v !== null);
    return values.length ? fmt(values[values.length - 1], 2) + unit : '–';
  };
  return h('div', {}, svg, h('div', { class: 'legend' },
    measures.map(([key, label, cls]) => h('span', { class: cls, 'data-measure': key }, `${label}: ${last(key)}`))));
}

function niceCeil(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

// ---- A colony: backlog, executors, recent and failed processes, newest workflows.

function colonyPage(name) {
  const c = snapshot.colonies.find(x => x.colony.name === name);
  if (!c) return h('div', {}, h('h1', {}, `Colony ${name}`), h('p', { class: 'empty' }, 'No such colony (or this token does not reach it).'));
  const st = c.stats;
  return h('div', { 'data-colony': name },
    h('h1', {}, `Colony ${name} `, c.colony.paused ? h('span', { class: 'badge paused' }, 'paused') : null, ' ',
      c.colony.strict ? h('span', { class: 'badge strict' }, 'strict') : null),
    meta(),
    h('div', { class: 'meta' }, `${st.waiting} waiting · ${st.blocked} blocked · ${st.running} running · `
      + `${st.succeeded} succeeded · ${st.failed} failed · ${st.cancelled} cancelled · ${st.executors} executors`),
    h('div', { class: 'grid' },
      h('div', { class: 'panel', id: 'backlog' }, h('h2', {}, 'Backlog'), backlogTable([c], false)),
      h('div', { class: 'panel', id: 'executors' }, h('h2', {}, 'Executors'), executorsTable([c], false))),
    h('div', { class: 'panel', id: 'failed' }, h('h2', {}, 'Failed processes (click for logs)'),
      processTable(c.failed, 'ended')),
    h('div', { class: 'panel', id: 'recent' }, h('h2', {}, 'Recent processes (click for logs)'),
      processTable(c.recent, 'submitted')),
    h('div', { class: 'panel', id: 'workflows' }, h('h2', {}, 'Newest workflows'),
      c.workflows.length ? c.workflows.map(w => h('div', {},
        h('p', {}, h('a', { href: `#/workflow/${w.id}` }, `workflow ${w.id}`), ' ', stateBadge(w.state),
          ` · ${w.nodes.length} nodes · submitted ${ago(w.submitted_at)}`),
        dag(w))) : h('p', { class: 'empty' }, 'No workflow among the recent processes.')));
}

function processTable(processes, when) {
  const rows = processes.map(p => h('tr', { class: 'clickable process-row', 'data-process': p.id,
    onclick: () => { location.hash = `#/process/${p.id}`; } },
  h('td', { class: 'num' }, h('a', { href: `#/process/${p.id}` }, p.id)),
  h('td', {}, stateBadge(p.state)),
  h('td', {}, p.funcname),
  h('td', {}, p.executor_type),
  h('td', {}, p.location ?? ''),
  h('td', {}, p.assigned_executor ?? ''),
  h('td', { class: 'num' }, p.retries),
  h('td', {}, when === 'ended' ? ago(p.ended_at) : ago(p.submitted_at)),
  h('td', {}, p.workflow_id ? h('a', { href: `#/workflow/${p.workflow_id}` }, `wf ${p.workflow_id}`) : '')));
  return table([['id', 'num'], ['state'], ['function'], ['type'], ['location'], ['executor'],
    ['retries', 'num'], [when], ['workflow']], rows, 'None.');
}

// ---- One process, with its logs (fetched when opened and when its state changes).

async function api(path) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${token()}` }, cache: 'no-store' });
  if (response.status === 401) {
    await refused(response);
    throw new Error('logged out');
  }
  if (!response.ok) throw new Error(await errorMessage(response));
  return response.json();
}

// Fetches what a detail page shows once per `key` (and again when `version` changes).
function fetchDetail(key, version, load) {
  if (detail.key === key && detail.version === version) return;
  detail = { key, version, data: detail.key === key ? detail.data : null, error: null };
  load().then(data => {
    if (detail.key !== key) return;
    detail.data = data;
    detail.error = null;
    render();
  }, e => {
    if (detail.key !== key) return;
    detail.error = e.message;
    render();
  });
}

function knownState(id) {
  for (const c of snapshot.colonies) {
    for (const p of c.recent.concat(c.failed)) if (String(p.id) === String(id)) return p.state;
  }
  return null;
}

function processPage(id) {
  fetchDetail(`process/${id}`, knownState(id), async () => {
    const [process, logs] = await Promise.all([api(`/v1/processes/${encodeURIComponent(id)}`),
      api(`/v1/processes/${encodeURIComponent(id)}/logs`)]);
    return { process, logs };
  });
  const head = h('h1', {}, `Process ${id}`);
  if (detail.error) return h('div', {}, head, h('p', { class: 'error' }, detail.error));
  if (!detail.data) return h('div', {}, head, h('p', { class: 'empty' }, 'Loading…'));
  const { process: p, logs } = detail.data;
  const field = (label, value) => [h('dt', {}, label), h('dd', {}, value ?? '')];
  return h('div', { 'data-process': p.id },
    h('h1', {}, `Process ${p.id} `, stateBadge(p.state)),
    h('p', {}, h('a', { href: `#/colony/${encodeURIComponent(p.colony)}` }, `← colony ${p.colony}`)),
    h('div', { class: 'grid' },
      h('div', { class: 'panel' }, h('h2', {}, 'Process'), h('dl', { class: 'fields' },
        field('function', p.funcname), field('colony', p.colony), field('executor type', p.executor_type),
        field('location', p.location), field('executor', p.assigned_executor), field('priority', p.priority),
        field('retries', p.retries), field('submitted', `${p.submitted_at} (${ago(p.submitted_at)})`),
        field('started', p.started_at), field('ended', p.ended_at),
        field('workflow', p.workflow_id ? h('a', { href: `#/workflow/${p.workflow_id}` }, `${p.workflow_id} (${p.nodename})`) : null))),
      h('div', { class: 'panel' }, h('h2', {}, 'Spec, input, output, errors'),
        h('pre', {}, JSON.stringify(p.spec, null, 2)),
        p.input ? h('pre', {}, JSON.stringify(p.input, null, 2)) : null,
        p.output ? h('pre', {}, JSON.stringify(p.output, null, 2)) : null,
        p.errors ? h('pre', { class: 'error', id: 'errors' }, p.errors.join('\n')) : null)),
    h('div', { class: 'panel', id: 'logs' }, h('h2', {}, `Logs (${logs.length})`),
      table([['logged'], ['executor'], ['message']], logs.map(l => h('tr', { class: 'log-row' },
        h('td', {}, l.logged_at), h('td', {}, l.executor), h('td', { class: 'mono' }, l.message))),
      'No log lines.')));
}

// ---- A workflow's graph: live from the snapshot when it is one of the newest, else fetched.

function workflowPage(id) {
  let w = null;
  for (const c of snapshot.colonies) w = w || c.workflows.find(x => String(x.id) === String(id));
  if (!w) {
    fetchDetail(`workflow/${id}`, null, () => api(`/v1/workflows/${encodeURIComponent(id)}`));
    if (detail.error) return h('div', {}, h('h1', {}, `Workflow ${id}`), h('p', { class: 'error' }, detail.error));
    if (!detail.data) return h('div', {}, h('h1', {}, `Workflow ${id}`), h('p', { class: 'empty' }, 'Loading…'));
    w = detail.data;
  }
  return h('div', { 'data-workflow': w.id },
    h('h1', {}, `Workflow ${w.id} `, stateBadge(w.state)),
    h('p', {}, h('a', { href: `#/colony/${encodeURIComponent(w.colony)}` }, `← colony ${w.colony}`),
      ` · submitted ${ago(w.submitted_at)}`),
    h('div', { class: 'panel', id: 'dag' }, dag(w)),
    h('div', { class: 'panel' }, h('h2', {}, 'Nodes'), table([['node'], ['process', 'num'], ['state'], ['parents'], ['children']],
      w.nodes.map(n => h('tr', { class: 'clickable node-row', 'data-node': n.nodename,
        onclick: () => { location.hash = `#/process/${n.process_id}`; } },
      h('td', {}, n.nodename), h('td', { class: 'num' }, n.process_id), h('td', {}, nodeState(n)),
      h('td', {}, n.parents.join(', ')), h('td', {}, n.children.join(', ')))), 'No nodes.')));
}

// A waiting node whose parents have not all finished is blocked, not assignable.
function nodeStateName(n) {
  return n.state === 0 && n.pending_parents > 0 ? 'blocked' : stateName(n.state);
}

function nodeState(n) {
  const name = nodeStateName(n);
  return h('span', { class: `badge state-${name}`, 'data-state': name }, name);
}

// Layered layout, left to right: a node's layer is its longest path from a root; within a
// layer nodes are ordered by the mean position of their parents (one barycentre pass).
function dag(w) {
  const byName = new Map(w.nodes.map(n => [n.nodename, n]));
  const layerOf = new Map();
  const depth = (n, stack) => {
    if (layerOf.has(n.nodename)) return layerOf.get(n.nodename);
    if (stack.has(n.nodename)) return 0;
    stack.add(n.nodename);
    let d = 0;
    for (const p of n.parents) if (byName.has(p)) d = Math.max(d, depth(byName.get(p), stack) + 1);
    stack.delete(n.nodename);
    layerOf.set(n.nodename, d);
    return d;
  };
  w.nodes.forEach(n => depth(n, new Set()));
  const layers = [];
  for (const n of w.nodes) (layers[layerOf.get(n.nodename)] ||= []).push(n);
  const index = new Map();
  layers.forEach((layer, li) => {
    if (li > 0) {
      const bary = n => {
        const ps = n.parents.filter(p => index.has(p)).map(p => index.get(p));
        return ps.length ? ps.reduce((a, b) => a + b, 0) / ps.length : 0;
      };
      layer.sort((a, b) => bary(a) - bary(b));
    }
    layer.forEach((n, i) => index.set(n.nodename, i));
  });
  const NW = 150, NH = 42, GX = 70, GY = 18, P = 10;
  const tallest = Math.max(...layers.map(l => l.length));
  const pos = new Map();
  layers.forEach((layer, li) => {
    const offset = (tallest - layer.length) * (NH + GY) / 2;
    layer.forEach((n, i) => pos.set(n.nodename, { x: P + li * (NW + GX), y: P + offset + i * (NH + GY) }));
  });
  const width = P * 2 + layers.length * NW + (layers.length - 1) * GX;
  const height = P * 2 + tallest * NH + (tallest - 1) * GY;
  const svg = s('svg', { class: 'dag', viewBox: `0 0 ${width} ${height}`, width, height, role: 'img',
    'aria-label': `workflow ${w.id}` },
  s('defs', {}, s('marker', { id: `arrow-${w.id}`, viewBox: '0 0 10 10', refX: 10, refY: 5,
    markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' }, s('path', { class: 'arrow', d: 'M0,0 L10,5 L0,10 z' }))));
  for (const n of w.nodes) {
    const to = pos.get(n.nodename);
    for (const p of n.parents) {
      const from = pos.get(p);
      if (!from) continue;
      const x1 = from.x + NW, y1 = from.y + NH / 2, x2 = to.x, y2 = to.y + NH / 2, mx = (x1 + x2) / 2;
      svg.append(s('path', { class: 'edge', d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`,
        'marker-end': `url(#arrow-${w.id})` }));
    }
  }
  for (const n of w.nodes) {
    const { x, y } = pos.get(n.nodename);
    const name = nodeStateName(n);
    svg.append(s('g', { class: `node state-${name}`, 'data-node': n.nodename, 'data-state': name,
      onclick: () => { location.hash = `#/process/${n.process_id}`; } },
    s('title', {}, `${n.nodename}: process ${n.process_id}, ${name}`),
    s('rect', { x, y, width: NW, height: NH, rx: 6 }),
    s('text', { x: x + 10, y: y + 17 }, n.nodename.length > 20 ? `${n.nodename.slice(0, 19)}…` : n.nodename),
    s('text', { class: 'sub', x: x + 10, y: y + 33 }, `#${n.process_id} · ${name}`)));
  }
  return svg;
}

// ---- Start.

document.getElementById('login-form').addEventListener('submit', event => {
  event.preventDefault();
  const value = document.getElementById('token').value.trim();
  if (!value) return;
  sessionStorage.setItem(TOKEN_KEY, value);
  document.getElementById('token').value = '';
  document.getElementById('login-error').textContent = '';
  connect();
});
document.getElementById('logout').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin('Logged out.');
});
window.addEventListener('hashchange', () => {
  takeTokenFromFragment();
  if (token() && !stream) connect();
  else render();
});
takeTokenFromFragment();
connect();
