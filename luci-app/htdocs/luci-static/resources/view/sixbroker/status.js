'use strict';
'require view';
'require rpc';
'require poll';
'require dom';
'require ui';
'require sixbroker.options as sbopts';

/*
 * Status -> sixbroker: every tunnel as netifd and the kernel see it, refreshed every 5 seconds, and a
 * Diagnose button that runs the checks one would otherwise type by hand and says which one failed.
 * The data comes from the rpcd plugin luci.sixbroker (src/sixbroker/openwrt/rpcd.py, status.py, devfacts.py,
 * diagnose.py).
 */

var callStatus = rpc.declare({
	object: 'luci.sixbroker',
	method: 'status',
	expect: { '': {} }
});

/* diagnose sends probes, so the ACL grants it with write access only (acl.d); rpcd's session.access
 * answers whether this login has it, as form.js asks about uci write access */
var callSessionAccess = rpc.declare({
	object: 'session',
	method: 'access',
	params: [ 'scope', 'object', 'function' ],
	expect: { 'access': false }
});

var callDiagnose = rpc.declare({
	object: 'luci.sixbroker',
	method: 'diagnose',
	params: [ 'interface' ],
	expect: { '': {} }
});

/* diagnose.py CHECKS, in its order */
var CHECKS = {
	interface: _('Interface with protocol sixbroker'),
	netifd: _('netifd brought the interface up'),
	device: _('Tunnel device in the kernel'),
	ipv4_route: _('IPv4 route to the broker'),
	ipv4_ping: _('Broker answers ping over IPv4'),
	proto41: _('Broker answers protocol 41'),
	ipv6_ping: _('Broker\'s tunnel address answers ping over IPv6'),
	mtu: _('Full-size packets pass (path MTU)'),
	default_route: _('IPv6 default route through the tunnel'),
	lan_prefix: _('Routed prefix handed to the LAN')
};

var MARKS = {
	ok: [ '\u2714', 'color:#2e7d32', _('passed') ],
	fail: [ '\u2718', 'color:#c62828', _('failed') ],
	warn: [ '\u26a0', 'color:#ef6c00', _('warning') ],
	skip: [ '\u2013', 'color:#757575', _('not run') ]
};

/* the updater's answers in words: core/dyndns.py ANSWERS, then FAILURES (a test holds them equal) */
var UPDATE_WORDS = {
	'good': _('The broker took the new address'),
	'nochg': _('The broker already had this address'),
	'badauth': _('The broker refused the tunnel name or the update key'),
	'nohost': _('The broker has no tunnel of this name (tunnelid)'),
	'notfqdn': _('The broker did not accept the tunnel name (tunnelid) as a name'),
	'numhost': _('The broker says the request named several tunnels'),
	'!yours': _('The tunnel belongs to another account'),
	'!donator': _('The broker refused an option this account may not use'),
	'badagent': _('The broker refused the request as malformed'),
	'badip': _('The broker refused the address (not a public IPv4 address)'),
	'abuse': _('The broker is refusing updates for a while: too many requests'),
	'911': _('The broker has a problem of its own; trying again later'),
	'dnserr': _('The broker has a problem of its own; trying again later'),
	'unauthorized': _('The broker refused the tunnel name or the update key (HTTP 401)'),
	'httperror': _('The broker answered with an HTTP error'),
	'unreachable': _('The broker could not be reached over IPv4'),
	'badcert': _('The broker\'s certificate was not accepted (updatecert, or its name or address)'),
	'badresponse': _('The broker\'s answer is not a dyndns2 answer (check updateurl)'),
	'nofetch': _('uclient-fetch is not installed (opkg install uclient-fetch, and a libustream TLS library for https)')
};

/* core/dyndns.py kinds: ok, config (the request is wrong), abuse, later (retried with backoff) */
var UPDATE_MARKS = { ok: 'ok', config: 'fail', abuse: 'warn', later: 'warn' };

function formatBytes(n) {
	if (n == null)
		return '?';

	var units = [ 'B', 'KiB', 'MiB', 'GiB', 'TiB' ], i = 0, v = n;

	while (v >= 1024 && i < units.length - 1) {
		v /= 1024;
		i++;
	}

	return (i == 0) ? (n + ' B') : (v.toFixed(1) + ' ' + units[i]);
}

function duration(seconds) {
	if (seconds == null)
		return '?';

	var d = Math.floor(seconds / 86400),
	    h = Math.floor(seconds % 86400 / 3600),
	    m = Math.floor(seconds % 3600 / 60),
	    s = seconds % 60;

	if (d)
		return d + 'd ' + h + 'h ' + m + 'm';

	if (h)
		return h + 'h ' + m + 'm';

	if (m)
		return m + 'm ' + s + 's';

	return s + 's';
}

/*
 * netifd keeps every error a failing setup reports until the interface comes up (interface.c
 * interface_add_error appends, only IFEV_UP flushes), so a retried setup repeats them: each once.
 */
function errorTexts(t) {
	var out = [];

	(t.errors || []).forEach(function(e) {
		(e.messages || [ { code: e.code, text: e.code } ]).forEach(function(m) {
			var words = sbopts.errors.hasOwnProperty(m.code) ? sbopts.errorText(m.code) : m.text,
			    line = words + ' (' + m.code + ')';

			if (out.indexOf(line) < 0)
				out.push(line);
		});
	});

	return out;
}

function row(label, value) {
	return E('tr', { 'class': 'tr' }, [
		E('td', { 'class': 'td left', 'style': 'width:33%' }, [ label ]),
		E('td', { 'class': 'td left' }, [ value ])
	]);
}

return view.extend({
	load: function() {
		return Promise.all([
			L.resolveDefault(callStatus(), null),
			L.resolveDefault(callSessionAccess('ubus', 'luci.sixbroker', 'diagnose'), false)
		]);
	},

	renderState: function(t) {
		if (t.up)
			return E('span', {}, [
				E('strong', { 'style': MARKS.ok[1] }, [ _('Up') ]),
				(t.since != null) ? ' ' + _('since %s (%s)').format(new Date(t.since * 1000).toLocaleString(),
					duration(t.uptime)) : ''
			]);

		if (t.pending)
			return E('strong', { 'style': MARKS.warn[1] }, [ _('Being set up') ]);

		return E('strong', { 'style': MARKS.fail[1] }, [ _('Down') ]);
	},

	renderTunnel: function(t) {
		var k = t.kernel, rows = [], errs = errorTexts(t);

		rows.push(row(_('Status'), this.renderState(t)));

		if (t.local || t.remote)
			rows.push(row(_('IPv4 end points'),
				(t.local || '?') + ' \u2192 ' + (t.remote || '?') + (t.tunlink ? ' (' + _('over %s').format(t.tunlink) + ')' : '')));

		if (t.addresses && t.addresses.length)
			rows.push(row(_('Tunnel address'), t.addresses.join(', ')));

		if (t.gateway)
			rows.push(row(_('Broker tunnel address'), t.gateway));

		(t.prefixes || []).forEach(function(p) {
			var given = (p.assigned || []).map(function(a) { return a.interface + ' ' + a.prefix; });
			rows.push(row(_('Routed prefix'), p.prefix + ' \u2192 ' + (given.length ? given.join(', ') : _('not handed to any LAN'))));
		});

		if (t.device)
			rows.push(row(_('Device'), k ? _('%s, MTU %d').format(t.device, k.mtu) : _('%s (missing in the kernel)').format(t.device)));

		if (k) {
			var st = k.statistics || {};
			rows.push(row(_('Received'), _('%s (%d packets)').format(formatBytes(st.rx_bytes), st.rx_packets || 0)));
			rows.push(row(_('Transmitted'), _('%s (%d packets)').format(formatBytes(st.tx_bytes), st.tx_packets || 0)));
		}

		if (t.up)
			rows.push(row(_('Round-trip time'), (t.rtt_ms != null) ? (t.rtt_ms.toFixed(1) + ' ms')
				: E('em', {}, [ t.rtt_error || _('unknown') ])));

		if (errs.length)
			rows.push(row(_('Last error'), E('span', { 'style': MARKS.fail[1] }, [ errs.join('; ') ])));

		rows = rows.concat(this.renderUpdate(t));

		if (!t.up && t.config)
			rows = rows.concat(this.renderConfig(t.config));

		return E('div', { 'class': 'cbi-section', 'data-interface': t.interface }, [
			E('h3', {}, [ t.interface + (t.device ? ' (' + t.device + ')' : '') ]),
			E('table', { 'class': 'table' }, rows),
			E('div', { 'class': 'right' }, [
				this.mayDiagnose ? E('button', {
					'class': 'btn cbi-button cbi-button-action',
					'click': ui.createHandlerFn(this, 'handleDiagnose', t.interface)
				}, [ _('Diagnose') ]) : E('em', {}, [ _('Diagnose needs the right to change the network settings') ])
			]),
			this.renderDiagnosis(this.diagnoses[t.interface])
		]);
	},

	/* the updater's last request (core/updaterecord.py, status.py last_update()) */
	renderUpdate: function(t) {
		var u = t.update, rows = [];

		if (!u || u.time == null)
			return rows;

		var when = function(s) { return new Date(s * 1000).toLocaleString(); },
		    mark = MARKS[UPDATE_MARKS[u.kind] || 'warn'],
		    words = UPDATE_WORDS.hasOwnProperty(u.word) ? UPDATE_WORDS[u.word] : (u.words || u.word);

		rows.push(row(_('Last update'), when(u.time)));
		rows.push(row(_('Broker\'s answer'), E('span', { 'style': mark[1] }, [ words + ' (' + u.word + ')' ])));

		if (u.address)
			rows.push(row(_('Address the broker saw'), u.address));

		if (t.up && u.next != null)
			rows.push(row(_('Next update'), when(u.next) + (u.fails ? ', ' + _('%d failures in a row').format(u.fails) : '')));

		return rows;
	},

	/* a tunnel that is not up: what it is set to do (status.py configured()) */
	renderConfig: function(c) {
		var rows = [ row(E('strong', {}, [ _('Configured') ]), '') ],
		    auto = function(v, words) { return v ? v : E('em', {}, [ words ]); };

		rows.push(row(_('Broker'), auto(c.peeraddr, _('not set'))));
		rows.push(row(_('Local IPv4 address'), auto(c.ipaddr, _('from the tunnel link'))));
		rows.push(row(_('Tunnel address'), auto(c.ip6addr, _('not set'))));
		rows.push(row(_('Broker tunnel address'), c.ip6gw
			? (c.ip6gw_derived ? _('%s (derived)').format(c.ip6gw) : c.ip6gw) : E('em', {}, [ _('cannot be derived') ])));
		rows.push(row(_('Routed prefixes'), c.ip6prefix.length ? c.ip6prefix.join(', ') : E('em', {}, [ _('none') ])));
		rows.push(row(_('Tunnel link'), auto(c.tunlink, _('the route to the broker'))));
		rows.push(row(_('MTU'), auto(c.mtu, _('the link\'s MTU less 20'))));

		if (c.device)
			rows.push(row(_('Device'), c.device));

		return rows;
	},

	renderDiagnosis: function(d) {
		if (!d)
			return E('div', {});

		if (d.error)
			return E('div', { 'class': 'alert-message warning' }, [ d.error ]);

		var rows = (d.checks || []).map(function(c) {
			var mark = MARKS[c.status] || MARKS.skip;

			return E('tr', { 'class': 'tr' }, [
				E('td', { 'class': 'td', 'style': mark[1] + ';width:2em', 'title': mark[2] }, [ mark[0] ]),
				E('td', { 'class': 'td left', 'style': 'width:33%' }, [ CHECKS[c.name] || c.title ]),
				E('td', { 'class': 'td left' }, [ c.text ])
			]);
		});

		return E('div', { 'class': 'cbi-section' }, [
			E('p', {}, [ E('strong', { 'style': (d.ok ? MARKS.ok : MARKS.fail)[1] }, [ d.summary ]) ]),
			E('table', { 'class': 'table' }, rows)
		]);
	},

	renderAll: function(data) {
		var nodes = [ E('h2', {}, [ _('sixbroker tunnels') ]) ];

		if (!data || data.error) {
			nodes.push(E('div', { 'class': 'alert-message warning' }, [
				data && data.code && sbopts.errors.hasOwnProperty(data.code) ? sbopts.errorText(data.code)
					: (data && data.error) || _('No answer from the sixbroker backend (rpcd plugin luci.sixbroker)')
			]));
			return nodes;
		}

		if (!data.tunnels || !data.tunnels.length) {
			nodes.push(E('p', {}, [ E('em', {}, [
				_('No interface uses the protocol sixbroker: add one under Network \u2192 Interfaces.') ]) ]));
			return nodes;
		}

		return nodes.concat(data.tunnels.map(L.bind(this.renderTunnel, this)));
	},

	refresh: function() {
		return L.resolveDefault(callStatus(), null).then(L.bind(function(data) {
			this.data = data;
			dom.content(this.root, this.renderAll(data));
		}, this));
	},

	handleDiagnose: function(name, ev) {
		return callDiagnose(name).then(L.bind(function(d) {
			this.diagnoses[name] = d;
			dom.content(this.root, this.renderAll(this.data));
		}, this)).catch(L.bind(function(e) {
			this.diagnoses[name] = { error: _('Diagnose failed: %s').format(e.message || String(e)) };
			dom.content(this.root, this.renderAll(this.data));
		}, this));
	},

	render: function(loaded) {
		var data = loaded[0];

		this.mayDiagnose = (loaded[1] === true);
		this.data = data;
		this.diagnoses = {};
		this.root = E('div', {}, this.renderAll(data));
		poll.add(L.bind(this.refresh, this), 5);
		return this.root;
	},

	handleSaveApply: null,
	handleSave: null,
	handleReset: null
});
