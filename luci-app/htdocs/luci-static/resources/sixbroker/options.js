'use strict';
'require baseclass';

/*
 * The sixbroker protocol's option rules, for the browser: a line-by-line mirror of validate() in
 * src/sixbroker/core/options.py (and of the address parsing in src/sixbroker/core/addr.py it relies on), so the
 * form refuses exactly what the netifd handler would refuse, with the same words.
 *
 * tests/luci/test_luci_form.py runs both on the same values, generated ones included, and holds the
 * option names, kinds, defaults and error words to options.SCHEMA and errors.CODES: change one side
 * and that test says where the other must follow.
 *
 * IPv6 values are arrays of eight 16-bit groups: ES2017 has no 128-bit integers.
 */

/* Every code the netifd handler can report, with the words src/sixbroker/core/errors.py gives it. */
var ERRORS = {
	MISSING_PEER_ADDRESS: _('No peer address (peeraddr): set the IPv4 address or host name of your broker'),
	INVALID_PEER_ADDRESS: _('The peer address (peeraddr) is neither an IPv4 address nor a valid host name'),
	PEER_NOT_IPV4: _('The peer address (peeraddr) must be IPv4: 6in4 runs over IPv4'),
	PEER_NOT_UNICAST: _('The peer address (peeraddr) is not a unicast IPv4 address'),
	PEER_IS_LOCAL: _('The peer address (peeraddr) is the same as the local address (ipaddr)'),
	INVALID_IPADDR: _('The local address (ipaddr) is not an IPv4 address'),
	IPADDR_NOT_UNICAST: _('The local address (ipaddr) is not a unicast IPv4 address'),
	MISSING_IP6ADDR: _('No tunnel address (ip6addr): set this end\'s IPv6 address with its length, e.g. 2001:db8::b/127'),
	INVALID_IP6ADDR: _('The tunnel address (ip6addr) is not an IPv6 address'),
	IP6ADDR_NEEDS_LENGTH: _('The tunnel address (ip6addr) needs a prefix length, e.g. /127 or /64'),
	IP6ADDR_BAD_LENGTH: _('The tunnel address (ip6addr) length must be between 64 and 128'),
	IP6ADDR_NOT_UNICAST: _('The tunnel address (ip6addr) is not a global or unique-local unicast address'),
	IP6ADDR_IS_ANYCAST: _('The tunnel address (ip6addr) is the subnet-router anycast address of its prefix'),
	INVALID_IP6GW: _('The tunnel gateway (ip6gw) is not an IPv6 address'),
	IP6GW_OUTSIDE_TUNNEL: _('The tunnel gateway (ip6gw) is not inside the tunnel prefix of ip6addr'),
	IP6GW_IS_LOCAL: _('The tunnel gateway (ip6gw) is this end\'s own address'),
	IP6GW_REQUIRED: _('The tunnel gateway cannot be derived from ip6addr: set ip6gw'),
	INVALID_IP6PREFIX: _('A routed prefix (ip6prefix) is not an IPv6 prefix'),
	IP6PREFIX_NEEDS_LENGTH: _('A routed prefix (ip6prefix) needs a length, e.g. 2001:db8:1::/64'),
	IP6PREFIX_BAD_LENGTH: _('A routed prefix (ip6prefix) must be between /1 and /64 to be handed to the LAN'),
	IP6PREFIX_HOST_BITS: _('A routed prefix (ip6prefix) has bits set after its length'),
	IP6PREFIX_NOT_UNICAST: _('A routed prefix (ip6prefix) is not a global or unique-local unicast prefix'),
	PREFIX_OVERLAPS_TUNNEL: _('A routed prefix (ip6prefix) overlaps the tunnel\'s own prefix (ip6addr)'),
	PREFIXES_OVERLAP: _('Two routed prefixes (ip6prefix) overlap'),
	INVALID_TUNLINK: _('The underlying interface (tunlink) is not a valid interface name'),
	INVALID_MTU: _('The MTU is not a whole number'),
	MTU_OUT_OF_RANGE: _('The MTU must be between 1280 and 65515'),
	INVALID_TTL: _('The TTL must be a whole number between 1 and 255'),
	INVALID_TOS: _('The TOS must be \'inherit\' or a hexadecimal value 00 to ff'),
	INVALID_SOURCEROUTING: _('sourcerouting must be 0 or 1'),
	INVALID_DEFAULTROUTE: _('defaultroute must be 0 or 1'),
	INVALID_METRIC: _('The metric must be a whole number between 0 and 2147483647'),
	INVALID_ZONE: _('The firewall zone name is not valid'),
	INVALID_DEVICE: _('The tunnel device name must be 1 to 15 letters, digits, \'-\' or \'_\''),
	INVALID_TUNNELID: _('The tunnel name (tunnelid) must be 1 to 64 letters, digits, \'_\', \'-\' or \'.\''),
	INVALID_USERNAME: _('The update user name (username) must be 1 to 64 visible ASCII characters without \':\''),
	INVALID_UPDATEKEY: _('The update key (updatekey, password) must be 1 to 128 visible ASCII characters'),
	INVALID_UPDATEURL: _('The update URL (updateurl) must be an http:// or https:// URL naming a host, without spaces or \'#\''),
	INVALID_UPDATECERT: _('The broker\'s certificate (updatecert) must be an absolute file name'),
	INVALID_UPDATEINTERVAL: _('The update interval (updateinterval) must be 0 or a whole number of seconds from 60 to 86400'),
	UPDATE_NEEDS_TUNNELID: _('An update key is set but no tunnel name (tunnelid): the broker needs both'),
	UNKNOWN_OPTION: _('Unknown option'),
	OPTION_NOT_LIST: _('This option takes a list'),
	PEER_RESOLVE_FAIL: _('The peer\'s host name (peeraddr) did not resolve to an IPv4 address'),
	PEER_ADDRESS_MISSING: _('The broker address (peeraddr) is not set: give the IPv4 address or host name of your broker'),
	PEER_NOT_RESOLVED: _('The broker\'s host name (peeraddr) has no IPv4 address in DNS'),
	NO_LOCAL_ADDRESS: _('No local IPv4 address: the underlying interface has none, or there is no route to the peer'),
	TUNLINK_NOT_UP: _('The underlying interface (tunlink) is not up'),
	DEVICE_IN_USE: _('The tunnel device name (device) is taken by a device that is not a sit tunnel, or by another interface\'s tunnel'),
	UBUS_FAIL: _('Could not talk to netifd over ubus'),
	PEER_NOT_FOUND: _('The peer\'s host name (peeraddr) does not exist (NXDOMAIN): check its spelling'),
	PEER_NO_IPV4: _('The peer\'s host name (peeraddr) has no IPv4 address (no A record): 6in4 needs one'),
	TUNLINK_UNKNOWN: _('The underlying interface (tunlink) names no interface netifd knows'),
	UPDATE_REFUSED: _('netifd refused the tunnel (it could not create or claim the sit device): see the system log'),
	INTERNAL_ERROR: _('Internal error (a bug in sixbroker): see the system log')
};

/*
 * The join line's refusals (core/joinline.py, openwrt/join.py), with errors.py's words: the paste field
 * shows them.  Apart from ERRORS because netifd never reports them, so they are not registered as
 * interface error codes.
 */
var JOIN_ERRORS = {
	JOIN_FOREIGN: _('This is not a sixbroker join line (it must start with sb1:)'),
	JOIN_VERSION: _('This join line is of a newer format than this sixbroker reads: upgrade sixbroker'),
	JOIN_TRUNCATED: _('The join line is cut short: copy all of it (it is one long line)'),
	JOIN_DAMAGED: _('The join line is damaged (its checksum does not match): copy it again'),
	JOIN_INVALID: _('The join line\'s contents are not valid'),
	JOIN_CERT_WRITE: _('The broker\'s certificate file cannot be written')
};

/* options.py SCHEMA: name -> kind ('string' or 'list'); DEFAULTS: what an empty option means. */
var SCHEMA = {
	peeraddr: 'string',
	ipaddr: 'string',
	ip6addr: 'string',
	ip6gw: 'string',
	ip6prefix: 'list',
	tunlink: 'string',
	mtu: 'string',
	ttl: 'string',
	tos: 'string',
	sourcerouting: 'string',
	defaultroute: 'string',
	metric: 'string',
	zone: 'string',
	device: 'string',
	tunnelid: 'string',
	username: 'string',
	password: 'string',
	updatekey: 'string',
	updateurl: 'string',
	updatecert: 'string',
	updateinterval: 'string'
};

var DEFAULTS = {
	ttl: '64',
	tos: 'inherit',
	sourcerouting: '0',
	defaultroute: '1',
	zone: 'wan',
	updateinterval: '300'
};

/* options.py INTERVAL_MIN, INTERVAL_MAX */
var INTERVAL_MIN = 60;
var INTERVAL_MAX = 86400;

var TRUE_WORDS = [ '1', 'yes', 'on', 'true', 'enabled' ];
var FALSE_WORDS = [ '0', 'no', 'off', 'false', 'disabled' ];

var MTU_MIN = 1280;
var MTU_MAX = 65515;
var METRIC_MAX = 2147483647;
/* plan.py DEFAULT_MTU: Ethernet's 1500 less the 20-byte outer IPv4 header */
var DEFAULT_MTU = 1480;
/* options.py DEVICE_PREFIX, DEVICE_MAX (IFNAMSIZ - 1) */
var DEVICE_PREFIX = 'sb-';
var DEVICE_MAX = 15;

var DIGITS = /^[0-9]+$/;
var HEX = /^[0-9a-fA-F]$/;
var WHITE = /[ \t\n\r\x0b\x0c]/;

function isName(text, extra) {
	if (!text)
		return false;

	for (var i = 0; i < text.length; i++) {
		var c = text.charAt(i);

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || extra.indexOf(c) >= 0))
			return false;
	}

	return true;
}

function isHostname(text) {
	if (!text || text.length > 253)
		return false;

	var labels = (text.charAt(text.length - 1) == '.' ? text.substr(0, text.length - 1) : text).split('.');

	for (var i = 0; i < labels.length; i++) {
		var l = labels[i];

		if (!l || l.length > 63 || l.charAt(0) == '-' || l.charAt(l.length - 1) == '-' || !isName(l, '-'))
			return false;
	}

	/* an all-digit top label is a mistyped address, not a host name */
	return !DIGITS.test(labels[labels.length - 1]);
}

/* addr.py _v4: exactly four decimal numbers 0-255, no leading zeros; the value or null */
function parseIPv4(text) {
	if (typeof(text) != 'string' || !/^[0-9.]+$/.test(text))
		return null;

	var parts = text.split('.'), value = 0;

	if (parts.length != 4)
		return null;

	for (var i = 0; i < 4; i++) {
		var p = parts[i];

		if (p === '' || (p.length > 1 && p.charAt(0) == '0'))
			return null;

		var n = parseInt(p, 10);

		if (n > 255)
			return null;

		value = value * 256 + n;
	}

	return value;
}

/* addr.py _v6: any RFC 4291 text form; eight 16-bit groups or null */
function parseIPv6(text) {
	if (typeof(text) != 'string' || text === '' || WHITE.test(text))
		return null;

	if (text.indexOf('%') >= 0 || text.indexOf('/') >= 0 || text.indexOf('[') >= 0 || text.indexOf(']') >= 0)
		return null;

	if (text.indexOf(':') < 0 || text.indexOf(':::') >= 0)
		return null;

	var halves = text.split('::');

	if (halves.length > 2)
		return null;

	var head = halves[0], tail = (halves.length == 2) ? halves[1] : null;

	if (head.charAt(0) == ':')
		return null;

	var end = (tail === null) ? head : tail;

	if (end.charAt(end.length - 1) == ':')
		return null;

	var front = head ? head.split(':') : [],
	    back = tail ? tail.split(':') : [],
	    written = front.concat(back),
	    hasLast = written.length > 0 && text.substr(text.length - 2) != '::',
	    v4 = null;

	for (var i = 0; i < written.length; i++) {
		var g = written[i];

		if (g.indexOf('.') >= 0) {
			if (i != written.length - 1 || !hasLast)
				return null;

			v4 = parseIPv4(g);

			if (v4 === null)
				return null;

			continue;
		}

		for (var j = 0; j < g.length; j++)
			if (!HEX.test(g.charAt(j)))
				return null;

		if (g.length > 4)
			return null;
	}

	var count = written.length + (v4 !== null ? 1 : 0);

	if ((tail === null && count != 8) || (tail !== null && count > 7))
		return null;

	var values = [];

	for (var k = 0; k < written.length; k++)
		if (written[k].indexOf('.') < 0)
			values.push(parseInt(written[k], 16));

	if (v4 !== null) {
		values.push(Math.floor(v4 / 65536));
		values.push(v4 % 65536);
	}

	if (tail !== null) {
		var zeros = [];

		while (zeros.length + values.length < 8)
			zeros.push(0);

		values = values.slice(0, front.length).concat(zeros, values.slice(front.length));
	}

	return values;
}

/* addr.py Interface.parse(text, 6): "address/length" with host bits allowed; {value, length} or null */
function parseIPv6WithLength(text) {
	if (typeof(text) != 'string' || text === '' || WHITE.test(text))
		return null;

	var slash = text.indexOf('/');

	if (slash < 0)
		return null;

	var value = parseIPv6(text.substr(0, slash)),
	    ltext = text.substr(slash + 1);

	if (value === null || !DIGITS.test(ltext))
		return null;

	var length = parseInt(ltext, 10);

	return (length <= 128) ? { value: value, length: length } : null;
}

function masked(value, length) {
	var out = [];

	for (var i = 0; i < 8; i++) {
		var bits = Math.max(0, Math.min(16, length - 16 * i));
		out.push(bits ? (value[i] & ((0xffff << (16 - bits)) & 0xffff)) : 0);
	}

	return out;
}

function same(a, b) {
	for (var i = 0; i < 8; i++)
		if (a[i] != b[i])
			return false;

	return true;
}

function inside(net, length, value) {
	return same(masked(value, length), net);
}

function overlap(a, alen, b, blen) {
	var n = Math.min(alen, blen);
	return same(masked(a, n), masked(b, n));
}

/* addr.py is_unicast, is_loopback, is_link_local for IPv4 */
function unicast4(v) {
	return v != 0 && !(v >= 0xe0000000 && v <= 0xefffffff) && !(v >= 0xf0000000);
}

function loopback4(v) {
	return Math.floor(v / 16777216) == 127;
}

function linkLocal4(v) {
	return Math.floor(v / 65536) == 0xa9fe;
}

/* options.py _unicast6: not ::, multicast, loopback, link-local, ::/96 or ::ffff:0:0/96 */
function unicast6(g) {
	var upper0 = !(g[0] || g[1] || g[2] || g[3] || g[4]);

	if (upper0 && (g[5] == 0 || g[5] == 0xffff))
		return false;

	return (g[0] >> 8) != 0xff && (g[0] & 0xffc0) != 0xfe80;
}

function plusOne(g) {
	var out = g.slice(), i = 7;

	while (i >= 0) {
		out[i] = (out[i] + 1) & 0xffff;

		if (out[i] != 0)
			break;

		i--;
	}

	return out;
}

/* options.py derive_gateway: the other end of a /127 or /126, else ::1 of the prefix; or null */
function deriveGateway(ifc) {
	var v = ifc.value, last = v[7];

	if (ifc.length == 127)
		return v.slice(0, 7).concat([ last ^ 1 ]);

	if (ifc.length == 126) {
		var index = last & 3;
		return (index == 1 || index == 2) ? v.slice(0, 7).concat([ last ^ 3 ]) : null;
	}

	if (ifc.length == 128)
		return null;

	var gw = plusOne(masked(v, ifc.length));

	return same(gw, v) ? null : gw;
}

function toInt(text) {
	return (typeof(text) == 'string' && DIGITS.test(text)) ? parseInt(text, 10) : null;
}

function toBool(text) {
	var t = String(text).toLowerCase();

	if (TRUE_WORDS.indexOf(t) >= 0)
		return true;

	if (FALSE_WORDS.indexOf(t) >= 0)
		return false;

	return null;
}

/*
 * options.py validate(): config maps option -> text (ip6prefix: a list, or one text).  Returns every
 * problem in the Python's order as { code, option, index }; index numbers an ip6prefix entry.
 */
function validate(config) {
	var errors = [];

	function err(code, option, index) {
		errors.push({ code: code, option: option, index: (index != null) ? index : null });
	}

	function get(name) {
		var v = config[name];

		if (v == null || v === '')
			v = DEFAULTS.hasOwnProperty(name) ? DEFAULTS[name] : null;

		if (typeof(v) == 'number' || typeof(v) == 'boolean')
			v = (v === true) ? '1' : (v === false) ? '0' : String(v);

		return v;
	}

	/* peer */
	var peer = get('peeraddr'), peer4 = null;

	if (!peer)
		err('MISSING_PEER_ADDRESS', 'peeraddr');
	else if (peer.indexOf(':') >= 0)
		err('PEER_NOT_IPV4', 'peeraddr');
	else if (DIGITS.test(peer.replace(/\./g, ''))) {
		peer4 = parseIPv4(peer);

		if (peer4 === null)
			err('INVALID_PEER_ADDRESS', 'peeraddr');
		else if (!unicast4(peer4) || loopback4(peer4) || linkLocal4(peer4))
			err('PEER_NOT_UNICAST', 'peeraddr');
	}
	else if (!isHostname(peer))
		err('INVALID_PEER_ADDRESS', 'peeraddr');

	/* local */
	var local = get('ipaddr');

	if (local) {
		var local4 = parseIPv4(local);

		if (local4 === null)
			err('INVALID_IPADDR', 'ipaddr');
		else if (!unicast4(local4) || loopback4(local4))
			err('IPADDR_NOT_UNICAST', 'ipaddr');
		else if (peer4 !== null && peer4 === local4)
			err('PEER_IS_LOCAL', 'ipaddr');
	}

	/* tunnel address */
	var a6 = get('ip6addr'), ifc = null;

	if (!a6)
		err('MISSING_IP6ADDR', 'ip6addr');
	else if (a6.indexOf('/') < 0)
		err(parseIPv6(a6) === null ? 'INVALID_IP6ADDR' : 'IP6ADDR_NEEDS_LENGTH', 'ip6addr');
	else {
		var given = parseIPv6WithLength(a6);

		if (given === null)
			err('INVALID_IP6ADDR', 'ip6addr');
		else if (given.length < 64)
			err('IP6ADDR_BAD_LENGTH', 'ip6addr');
		else if (!unicast6(given.value))
			err('IP6ADDR_NOT_UNICAST', 'ip6addr');
		else if (given.length < 127 && same(given.value, masked(given.value, given.length)))
			err('IP6ADDR_IS_ANYCAST', 'ip6addr');
		else
			ifc = given;
	}

	/* gateway */
	var gw = get('ip6gw');

	if (gw) {
		var gw6 = parseIPv6(gw);

		if (gw6 === null)
			err('INVALID_IP6GW', 'ip6gw');
		else if (ifc !== null) {
			if (same(gw6, ifc.value))
				err('IP6GW_IS_LOCAL', 'ip6gw');
			else if (!inside(masked(ifc.value, ifc.length), ifc.length, gw6))
				err('IP6GW_OUTSIDE_TUNNEL', 'ip6gw');
		}
	}
	else if (ifc !== null && deriveGateway(ifc) === null)
		err('IP6GW_REQUIRED', 'ip6gw');

	/* routed prefixes */
	var prefixes = get('ip6prefix') || [], accepted = [];

	if (typeof(prefixes) == 'string')
		prefixes = [ prefixes ];
	else if (!Array.isArray(prefixes)) {
		err('OPTION_NOT_LIST', 'ip6prefix');
		prefixes = [];
	}

	for (var i = 0; i < prefixes.length; i++) {
		var text = prefixes[i];

		if (!text || text.indexOf('/') < 0) {
			err(parseIPv6(text) === null ? 'INVALID_IP6PREFIX' : 'IP6PREFIX_NEEDS_LENGTH', 'ip6prefix', i);
			continue;
		}

		var p = parseIPv6WithLength(text);

		if (p === null) {
			err('INVALID_IP6PREFIX', 'ip6prefix', i);
			continue;
		}

		var net = masked(p.value, p.length), clash = false;

		if (p.length < 1 || p.length > 64)
			err('IP6PREFIX_BAD_LENGTH', 'ip6prefix', i);
		else if (!same(p.value, net))
			err('IP6PREFIX_HOST_BITS', 'ip6prefix', i);
		else if (!unicast6(net))
			err('IP6PREFIX_NOT_UNICAST', 'ip6prefix', i);
		else if (ifc !== null && overlap(net, p.length, ifc.value, ifc.length))
			err('PREFIX_OVERLAPS_TUNNEL', 'ip6prefix', i);
		else {
			for (var j = 0; j < accepted.length; j++)
				if (overlap(net, p.length, accepted[j].value, accepted[j].length))
					clash = true;

			if (clash)
				err('PREFIXES_OVERLAP', 'ip6prefix', i);
			else
				accepted.push({ value: net, length: p.length });
		}
	}

	/* underlying interface: a netifd logical name */
	var tunlink = get('tunlink');

	if (tunlink && (tunlink.length > 15 || !isName(tunlink, '_-.')))
		err('INVALID_TUNLINK', 'tunlink');

	var mtu = get('mtu');

	if (mtu) {
		var m = toInt(mtu);

		if (m === null)
			err('INVALID_MTU', 'mtu');
		else if (m < MTU_MIN || m > MTU_MAX)
			err('MTU_OUT_OF_RANGE', 'mtu');
	}

	var ttl = toInt(get('ttl'));

	if (ttl === null || ttl < 1 || ttl > 255)
		err('INVALID_TTL', 'ttl');

	var tos = get('tos').toLowerCase();

	if (tos != 'inherit') {
		var t = (tos.substr(0, 2) == '0x') ? tos.substr(2) : tos;

		if (!t || t.length > 2 || !/^[0-9a-f]+$/.test(t))
			err('INVALID_TOS', 'tos');
	}

	if (toBool(get('sourcerouting')) === null)
		err('INVALID_SOURCEROUTING', 'sourcerouting');

	if (toBool(get('defaultroute')) === null)
		err('INVALID_DEFAULTROUTE', 'defaultroute');

	var metric = get('metric');

	if (metric) {
		var n = toInt(metric);

		if (n === null || n > METRIC_MAX)
			err('INVALID_METRIC', 'metric');
	}

	var zone = get('zone');

	/* fw4 zone names: nft chain names stay short */
	if (!isName(zone, '_') || zone.length > 32)
		err('INVALID_ZONE', 'zone');

	var device = get('device');

	/* no '.': netifd reads name.N as a VLAN of name */
	if (device && (device.length > 15 || !isName(device, '-_')))
		err('INVALID_DEVICE', 'device');

	validateUpdate(get, err);

	return errors;
}

/* options.py _printable: visible ASCII only, less the characters in bad */
function printable(text, bad) {
	for (var i = 0; i < text.length; i++) {
		var c = text.charAt(i);

		if (c < '!' || c > '~' || (bad && bad.indexOf(c) >= 0))
			return false;
	}

	return true;
}

/* options.py _validate_update: the updater's options */
function validateUpdate(get, err) {
	var tunnelid = get('tunnelid');

	if (tunnelid && (tunnelid.length > 64 || !isName(tunnelid, '_-.')))
		err('INVALID_TUNNELID', 'tunnelid');

	var user = get('username');

	if (user && (user.length > 64 || !printable(user, ':')))
		err('INVALID_USERNAME', 'username');

	var key = null;

	[ 'password', 'updatekey' ].forEach(function(name) {
		var v = get(name);

		if (v) {
			if (v.length > 128 || !printable(v, ''))
				err('INVALID_UPDATEKEY', name);
			else
				key = v;
		}
	});

	var url = get('updateurl');

	if (url) {
		var rest = (url.substr(0, 8) == 'https://') ? url.substr(8) : (url.substr(0, 7) == 'http://') ? url.substr(7) : '';

		if (!rest || '/?:'.indexOf(rest.charAt(0)) >= 0 || url.length > 255 || !printable(url, '#'))
			err('INVALID_UPDATEURL', 'updateurl');
	}

	var cert = get('updatecert');

	if (cert && (cert.charAt(0) != '/' || cert.length > 255 || !printable(cert, '')))
		err('INVALID_UPDATECERT', 'updatecert');

	var interval = toInt(get('updateinterval'));

	if (interval === null || interval > INTERVAL_MAX || (interval > 0 && interval < INTERVAL_MIN))
		err('INVALID_UPDATEINTERVAL', 'updateinterval');

	if (key && !get('tunnelid'))
		err('UPDATE_NEEDS_TUNNELID', 'tunnelid');
}

/* options.py name_hash: 32-bit FNV-1a over the UTF-8 bytes, xor-folded to 16 bits */
function nameHash(text) {
	var h = 0x811c9dc5, bytes = utf8(text);

	for (var i = 0; i < bytes.length; i++)
		h = Math.imul(h ^ bytes[i], 0x01000193) >>> 0;

	return ((h >>> 16) ^ (h & 0xffff)) >>> 0;
}

function utf8(text) {
	var out = [];

	for (var i = 0; i < text.length; i++) {
		var c = text.charCodeAt(i);

		if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
			var d = text.charCodeAt(i + 1);

			if (d >= 0xdc00 && d <= 0xdfff) {
				c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
				i++;
			}
		}

		if (c < 0x80)
			out.push(c);
		else if (c < 0x800)
			out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
		else if (c < 0x10000)
			out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
		else
			out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
	}

	return out;
}

/*
 * options.py device_name: `device` when set, else sb-<interface> when that fits the kernel's 15
 * characters, else sb- + the first 7 characters + '-' + 4 hex digits of nameHash(interface).
 */
function deviceName(iface, option) {
	if (option)
		return option;

	var name = DEVICE_PREFIX + iface;

	if (name.length <= DEVICE_MAX)
		return name;

	var h = nameHash(iface).toString(16);

	while (h.length < 4)
		h = '0' + h;

	return DEVICE_PREFIX + iface.substr(0, 7) + '-' + h;
}

/* addr.py format_ipv6 (RFC 5952) for eight groups */
function formatIPv6(g) {
	if (!(g[0] || g[1] || g[2] || g[3] || g[4]) && g[5] == 0xffff)
		return '::ffff:' + [ g[6] >> 8, g[6] & 255, g[7] >> 8, g[7] & 255 ].join('.');

	var best = -1, bestLen = 1, i = 0;

	while (i < 8) {
		if (g[i]) {
			i++;
			continue;
		}

		var j = i;

		while (j < 8 && !g[j])
			j++;

		if (j - i > bestLen) {
			best = i;
			bestLen = j - i;
		}

		i = j;
	}

	function hex(list) {
		return list.map(function(x) { return x.toString(16); }).join(':');
	}

	return (best < 0) ? hex(g) : hex(g.slice(0, best)) + '::' + hex(g.slice(best + bestLen));
}

/* The broker's tunnel address the handler derives from ip6addr (options.py derive_gateway), or null. */
function gatewayFor(ip6addr) {
	var refused = validate({ ip6addr: ip6addr }).filter(function(e) {
		return e.option == 'ip6addr' || e.option == 'ip6gw';
	});

	return refused.length ? null : formatIPv6(deriveGateway(parseIPv6WithLength(ip6addr)));
}

/* plan.py tunnel_mtu without an `mtu` option: the link's MTU less the outer IPv4 header */
function tunnelMtu(linkMtu) {
	return linkMtu ? Math.max(linkMtu - 20, MTU_MIN) : DEFAULT_MTU;
}

return baseclass.extend({
	errors: ERRORS,
	joinErrors: JOIN_ERRORS,
	schema: SCHEMA,
	defaults: DEFAULTS,
	trueWords: TRUE_WORDS,
	falseWords: FALSE_WORDS,
	defaultMtu: DEFAULT_MTU,

	validate: validate,
	deviceName: deviceName,
	nameHash: nameHash,
	gatewayFor: gatewayFor,
	tunnelMtu: tunnelMtu,
	toBool: toBool,

	errorText: function(code) {
		return ERRORS.hasOwnProperty(code) ? ERRORS[code] : JOIN_ERRORS.hasOwnProperty(code) ? JOIN_ERRORS[code] : code;
	}
});
