'use strict';
'require baseclass';

/*
 * The one-paste join line, for the browser: a line-by-line mirror of decode() in
 * src/sixbroker/core/joinline.py (read its docstring for the format), so the LuCI paste field takes
 * exactly the lines `sixbroker join` takes and refuses the others with the same code.
 *
 * tests/luci/test_luci_join.py runs both over every line of tests/data/join/vectors.json and over
 * generated damaged variants of the good ones.
 *
 * Hand-made on purpose:
 *  - SHA-256: LuCI is served over plain HTTP on the LAN, and crypto.subtle exists only in secure
 *    contexts (and is asynchronous, where a field's validate() must answer at once).
 *  - base64: atob() refuses what Python's binascii.a2b_base64 takes (it skips stray characters).
 *  - JSON: JSON.parse() reads 1480.0 as the integer 1480 and refuses NaN, where Python's json tells a
 *    float from an int and takes NaN; the verdict on mtu and v must be Python's.
 */

var VERSION = 1;
var PREFIX = 'sb1:';
var CHECK_BYTES = 8;
/* what a pasted line may carry before the token: the command itself (joinline.COMMANDS, same order) */
var COMMANDS = [ 'sixbroker router join', 'sixbroker join' ];
var REQUIRED = [ 'name', 'peer', 'ip6addr', 'ip6gw', 'ip6prefix', 'mtu', 'url', 'key' ];
var OPTIONAL = [ 'fp', 'cert' ];
var FIELDS = [ 'v' ].concat(REQUIRED, OPTIONAL);
var TEXTS = [ 'name', 'peer', 'ip6addr', 'ip6gw', 'url', 'key' ];
/* joinline._WS: only these four, not JavaScript's \s (which has NBSP and the like) */
var WS = ' \t\r\n';
var B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/* A refusal: the code (the field's words come from options.js ERRORS) and the detail Python gives. */
function JoinError(code, detail) {
	this.code = code;
	this.detail = detail;
}

function refuse(code, detail) {
	throw new JoinError(code, detail);
}

/* ---- SHA-256 (FIPS 180-4) over an array of bytes ---------------------------------------------- */

var K = [
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
];

function rotr(x, n) {
	return (x >>> n) | (x << (32 - n));
}

function sha256(bytes) {
	var h = [ 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 ];
	var n = bytes.length, total = ((n + 9 + 63) >> 6) << 6, m = new Uint8Array(total), w = new Array(64);

	for (var i = 0; i < n; i++)
		m[i] = bytes[i];

	m[n] = 0x80;
	/* the length in bits, big-endian, in the last 8 bytes (a join line is far below 2^32 bits) */
	var bits = n * 8;
	m[total - 4] = (bits >>> 24) & 255;
	m[total - 3] = (bits >>> 16) & 255;
	m[total - 2] = (bits >>> 8) & 255;
	m[total - 1] = bits & 255;

	for (var off = 0; off < total; off += 64) {
		for (var t = 0; t < 64; t++) {
			if (t < 16) {
				w[t] = (m[off + 4 * t] << 24) | (m[off + 4 * t + 1] << 16) | (m[off + 4 * t + 2] << 8) | m[off + 4 * t + 3];
			}
			else {
				var s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >>> 3),
				    s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >>> 10);
				w[t] = (w[t - 16] + s0 + w[t - 7] + s1) | 0;
			}
		}

		var a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];

		for (t = 0; t < 64; t++) {
			var t1 = (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[t] + w[t]) | 0,
			    t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) | 0;
			hh = g; g = f; f = e; e = (d + t1) | 0;
			d = c; c = b; b = a; a = (t1 + t2) | 0;
		}

		h[0] = (h[0] + a) | 0; h[1] = (h[1] + b) | 0; h[2] = (h[2] + c) | 0; h[3] = (h[3] + d) | 0;
		h[4] = (h[4] + e) | 0; h[5] = (h[5] + f) | 0; h[6] = (h[6] + g) | 0; h[7] = (h[7] + hh) | 0;
	}

	var out = [];
	for (i = 0; i < 8; i++)
		out.push((h[i] >>> 24) & 255, (h[i] >>> 16) & 255, (h[i] >>> 8) & 255, h[i] & 255);

	return out;
}

function hex(bytes) {
	var s = '';
	for (var i = 0; i < bytes.length; i++)
		s += (bytes[i] < 16 ? '0' : '') + bytes[i].toString(16);
	return s;
}

/* ---- base64 ----------------------------------------------------------------------------------- */

/*
 * binascii.a2b_base64 (CPython 3.11 Modules/binascii.c, not strict): characters outside the
 * alphabet are skipped; a '=' ends the input once it completes a group of four; a group left
 * unfinished is an error.  Returns null for that error.
 */
function a2bBase64(text) {
	var out = [], quad = 0, left = 0, pads = 0;

	for (var i = 0; i < text.length; i++) {
		var ch = text.charAt(i);

		if (text.charCodeAt(i) > 127)
			return null;    /* a str argument must be ASCII (binascii's ascii_buffer_converter) */

		if (ch == '=') {
			if (quad >= 2 && quad + (++pads) >= 4)
				return out;
			continue;
		}

		var v = B64.indexOf(ch);
		if (v < 0)
			continue;

		pads = 0;
		if (quad == 0) { left = v; quad = 1; }
		else if (quad == 1) { out.push(((left << 2) | (v >> 4)) & 255); left = v & 15; quad = 2; }
		else if (quad == 2) { out.push(((left << 4) | (v >> 2)) & 255); left = v & 3; quad = 3; }
		else { out.push(((left << 6) | v) & 255); left = 0; quad = 0; }
	}

	return (quad == 0) ? out : null;
}

/* joinline._unb64url */
function unb64url(text) {
	for (var i = 0; i < text.length; i++)
		if (!/[A-Za-z0-9_-]/.test(text.charAt(i)))
			refuse('JOIN_DAMAGED', 'a character that is not base64url: ' + text.charAt(i));

	/* no byte string encodes to a length of 4k+1: a line cut there; its last character holds no byte */
	if (text.length % 4 == 1)
		text = text.substring(0, text.length - 1);

	text = text.replace(/-/g, '+').replace(/_/g, '/');
	while (text.length % 4)
		text += '=';

	var data = a2bBase64(text);
	if (data === null)
		refuse('JOIN_DAMAGED', 'not base64url');

	return data;
}

/* ---- JSON, read as Python's json.loads reads it ------------------------------------------------ */

/* A JSON number with a fraction or an exponent, NaN or Infinity: Python's float, not int. */
function PyFloat(value) {
	this.value = value;
}

/* Python's json.loads (CPython's C scanner, strict): the value of `text`; JOIN_INVALID if it refuses. */
function pyJson(text) {
	var pos = 0;

	function fail() {
		throw new JoinError('JOIN_INVALID', 'not JSON');
	}

	function ws() {
		while (pos < text.length && WS.indexOf(text.charAt(pos)) >= 0)
			pos++;
	}

	function word(w, value) {
		if (text.substr(pos, w.length) != w)
			fail();
		pos += w.length;
		return value;
	}

	function str() {
		var s = '';
		pos++;
		for (;;) {
			if (pos >= text.length)
				fail();
			var c = text.charAt(pos++), code = c.charCodeAt(0);
			if (c == '"')
				return s;
			if (code < 0x20)
				fail();     /* strict: no raw control characters in a string */
			if (c != '\\') {
				s += c;
				continue;
			}
			var e = text.charAt(pos++);
			if (e == 'u') {
				var h = text.substr(pos, 4);
				if (!/^[0-9a-fA-F]{4}$/.test(h))
					fail();
				s += String.fromCharCode(parseInt(h, 16));
				pos += 4;
			}
			else {
				var i = '"\\/bfnrt'.indexOf(e);
				if (e === '' || i < 0)
					fail();
				s += '"\\/\b\f\n\r\t'.charAt(i);
			}
		}
	}

	function num() {
		var m = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?/.exec(text.substring(pos));
		if (!m)
			fail();
		pos += m[0].length;
		/* CPython refuses an int of more than 4300 digits (sys.int_info.default_max_str_digits) */
		if (!m[2] && !m[3] && m[1].length > 4300)
			fail();
		return (m[2] || m[3]) ? new PyFloat(parseFloat(m[0])) : parseInt(m[0], 10);
	}

	/* the members of an object or an array: none, or one and more separated by commas, then `close` */
	function items(close, each) {
		pos++;
		ws();
		if (text.charAt(pos) == close) {
			pos++;
			return;
		}
		for (;;) {
			each();
			ws();
			var c = text.charAt(pos++);
			if (c == close)
				return;
			if (c != ',')
				fail();
		}
	}

	function value() {
		ws();
		var c = text.charAt(pos);

		if (c == '{') {
			var obj = Object.create(null);
			items('}', function() {
				ws();
				if (text.charAt(pos) != '"')
					fail();
				var k = str();
				ws();
				if (text.charAt(pos++) != ':')
					fail();
				obj[k] = value();
			});
			return obj;
		}
		if (c == '[') {
			var arr = [];
			items(']', function() { arr.push(value()); });
			return arr;
		}
		if (c == '"')
			return str();
		if (c == 'n')
			return word('null', null);
		if (c == 't')
			return word('true', true);
		if (c == 'f')
			return word('false', false);
		if (c == 'N')
			return word('NaN', new PyFloat(NaN));
		if (c == 'I')
			return word('Infinity', new PyFloat(Infinity));
		if (c == '-' && text.substr(pos, 9) == '-Infinity')
			return word('-Infinity', new PyFloat(-Infinity));
		return num();
	}

	var v = value();
	ws();
	if (pos != text.length)
		fail();     /* "Extra data" */
	return v;
}

/* bytes.decode() (UTF-8, strict), or a refusal: TextDecoder's fatal mode refuses what Python's does */
function utf8(bytes) {
	try {
		/* ignoreBOM keeps a leading U+FEFF, which json.loads then refuses as Python does */
		return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(new Uint8Array(bytes));
	}
	catch (e) {
		refuse('JOIN_INVALID', 'not JSON');
	}
}

/* ---- the line --------------------------------------------------------------------------------- */

function isText(v) {
	return typeof(v) == 'string';
}

function has(obj, k) {
	return Object.prototype.hasOwnProperty.call(obj, k);
}

/* joinline.check: the fields, or the first refusal in Python's order */
function check(fields) {
	if (fields === null || typeof(fields) != 'object' || Array.isArray(fields) || fields instanceof PyFloat)
		refuse('JOIN_INVALID', 'not an object');

	REQUIRED.forEach(function(k) {
		if (!has(fields, k))
			refuse('JOIN_INVALID', 'no ' + k);
	});

	Object.keys(fields).forEach(function(k) {
		if (FIELDS.indexOf(k) < 0)
			refuse('JOIN_INVALID', 'unknown field ' + k);
	});

	TEXTS.forEach(function(k) {
		if (!isText(fields[k]) || !fields[k])
			refuse('JOIN_INVALID', k + ' is not a text');
	});

	/* an int (a float or a bool is not, as isinstance(mtu, int) and not bool says) */
	var mtu = fields.mtu;
	if (typeof(mtu) != 'number' || mtu < 1280 || mtu > 65515)
		refuse('JOIN_INVALID', 'mtu is not a number from 1280 to 65515');

	var p = fields.ip6prefix;
	if (!Array.isArray(p) || p.filter(function(x) { return !isText(x); }).length)
		refuse('JOIN_INVALID', 'ip6prefix is not a list of texts');

	/* JSON null is Python's None: the same as absent */
	var fp = has(fields, 'fp') ? fields.fp : null;
	if (fp !== null && (!isText(fp) || !/^[0-9a-f]{64}$/.test(fp)))
		refuse('JOIN_INVALID', 'fp is not 64 lowercase hex digits');

	var cert = has(fields, 'cert') ? fields.cert : null;
	if (cert !== null) {
		if (!isText(cert) || !cert)
			refuse('JOIN_INVALID', 'cert is not a text');

		var der = a2bBase64(cert);
		if (der === null)
			refuse('JOIN_INVALID', 'cert is not base64');

		if (fp !== null && hex(sha256(der)) != fp)
			refuse('JOIN_INVALID', 'cert does not have the fingerprint fp');
	}

	/* Python's v != 1: 1, 1.0 and True are all equal to 1 */
	var v = has(fields, 'v') ? fields.v : VERSION;
	if (!(v === VERSION || v === true || (v instanceof PyFloat && v.value === VERSION)))
		refuse('JOIN_VERSION', (v instanceof PyFloat) ? String(v.value) : (v !== null && typeof(v) == 'object') ? JSON.stringify(v) : String(v));

	return fields;
}

/* joinline.strip: white space anywhere and a leading command taken off */
function strip(line) {
	if (typeof(line) != 'string')
		refuse('JOIN_FOREIGN', 'not a text');

	var text = line, i;

	while (text.length && WS.indexOf(text.charAt(0)) >= 0)
		text = text.substring(1);
	while (text.length && WS.indexOf(text.charAt(text.length - 1)) >= 0)
		text = text.substring(0, text.length - 1);

	for (var c = 0; c < COMMANDS.length; c++) {
		var words = COMMANDS[c].split(' '), rest = text, ok = true;

		for (i = 0; i < words.length; i++) {
			if (rest.substring(0, words[i].length) != words[i]) {
				ok = false;
				break;
			}
			rest = rest.substring(words[i].length);
			/* at least one space between the words, however many the paste has */
			if (!rest.length || WS.indexOf(rest.charAt(0)) < 0) {
				ok = false;
				break;
			}
			while (rest.length && WS.indexOf(rest.charAt(0)) >= 0)
				rest = rest.substring(1);
		}

		if (ok) {
			text = rest;
			break;
		}
	}

	var out = '';
	for (i = 0; i < text.length; i++)
		if (WS.indexOf(text.charAt(i)) < 0)
			out += text.charAt(i);

	return out;
}

/* joinline.decode, throwing JoinError */
function decodeOrThrow(line) {
	var token = strip(line);

	if (token.substring(0, PREFIX.length) != PREFIX) {
		var colon = token.indexOf(':'), head = (colon >= 0) ? token.substring(0, colon) : '';
		if (head.length > 2 && head.substring(0, 2) == 'sb' && /^[0-9]+$/.test(head.substring(2)))
			refuse('JOIN_VERSION', 'this sixbroker reads sb1 lines, not ' + head);
		refuse('JOIN_FOREIGN', 'it does not start with ' + PREFIX);
	}

	var data = unb64url(token.substring(PREFIX.length));
	if (data.length < 2)
		refuse('JOIN_TRUNCATED', 'nothing after ' + PREFIX);

	var n = data[0] * 256 + data[1], want = 2 + n + CHECK_BYTES;
	if (data.length < want)
		refuse('JOIN_TRUNCATED', data.length + ' of ' + want + ' bytes');
	if (data.length > want)
		refuse('JOIN_DAMAGED', (data.length - want) + ' bytes more than the line says');

	var sum = sha256(data.slice(0, 2 + n));
	for (var i = 0; i < CHECK_BYTES; i++)
		if (sum[i] !== data[2 + n + i])
			refuse('JOIN_DAMAGED', 'the checksum does not match');

	/* the checksum matched: a line made by something else that followed the format badly */
	var fields = pyJson(utf8(data.slice(2, 2 + n)));

	if (fields !== null && typeof(fields) == 'object' && !Array.isArray(fields) && !(fields instanceof PyFloat) &&
	    !has(fields, 'v'))
		refuse('JOIN_INVALID', 'no v');

	return check(fields);
}

/*
 * { fields } for a good line, { code, detail } for a refused one.  Floats (which check() lets through
 * only as v) come back as numbers, so `fields` is plain JSON data.
 */
function decode(line) {
	try {
		var f = decodeOrThrow(line), out = {};
		Object.keys(f).forEach(function(k) {
			out[k] = (f[k] instanceof PyFloat) ? f[k].value : f[k];
		});
		return { fields: out };
	}
	catch (e) {
		if (e instanceof JoinError)
			return { code: e.code, detail: e.detail };
		throw e;
	}
}

/* tunnelconf.pem: the certificate (DER in standard base64) as a PEM file's text */
function pem(der) {
	var b = der.replace(/^[ \t\r\n\x0b-\x0c\x1c-\x1f]+|[ \t\r\n\x0b-\x0c\x1c-\x1f]+$/g, ''), s = '-----BEGIN CERTIFICATE-----\n';
	for (var i = 0; i < b.length; i += 64)
		s += b.substring(i, i + 64) + '\n';
	return s + '-----END CERTIFICATE-----\n';
}

return baseclass.extend({
	prefix: PREFIX,
	decode: decode,
	pem: pem,
	sha256hex: function(bytes) { return hex(sha256(bytes)); }
});
