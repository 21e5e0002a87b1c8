'use strict';
/*
 * Test harness for the LuCI app's JavaScript, driven by tests/luci/test_luci*.py and tests/openwrt/test_rpcd.py.
 *
 *   node luci_harness.js parse FILE...     acorn AST facts as JSON: syntax errors, features newer than
 *                                           ES2017 or that luci.mk's minifier mangles, 'require' lines,
 *                                           rpc.declare() objects, taboption() calls with the literal
 *                                           properties set on each option, object tables (ERRORS, ...)
 *   node luci_harness.js form SECTION       load protocol/sixbroker.js as LuCI would (its 'require's
 *                                           resolved to stand-ins) and report the rendered form
 *   node luci_harness.js validate SECTION   then, for each JSON config on stdin (one a line), answer a
 *                                           line: sixbroker/options.js validate() and what every form
 *                                           field's own validator says, as LuCI's widgets call them
 *   node luci_harness.js join              sixbroker/joinline.js decode() of each JSON string on stdin
 *   node luci_harness.js sha256            its SHA-256 of each JSON array of bytes on stdin, in hex
 *   node luci_harness.js view               render view/sixbroker/status.js with the plugin's answers
 *                                           read from stdin ({"status": ..., "diagnose": ...}), click
 *                                           Diagnose, report the text shown before and after
 *
 * The stand-ins follow LuCI (modules/luci-base/htdocs/luci-static/resources): form.js gives a widget
 * `optional: this.optional || this.rmempty` and `validate: L.bind(this.validate, this, section_id)`;
 * validation.js refuses an empty non-optional field before calling validate(), and calls it for an
 * empty optional one; network.js registerProtocol/registerErrorCode; rpc.js declare().
 */

const fs = require('fs');
const path = require('path');
const readline = require('readline');
const acorn = require('acorn');
const model = require('./luci_form.js');

const RESOURCES = path.resolve(__dirname, '../../luci-app/htdocs/luci-static/resources');

// ---- static facts ---------------------------------------------------------------------------------

function walk(node, visit, parent) {
	if (!node || typeof node.type != 'string')
		return;
	visit(node, parent);
	for (const key of Object.keys(node)) {
		const v = node[key];
		if (Array.isArray(v))
			v.forEach((c) => walk(c, visit, node));
		else if (v && typeof v.type == 'string')
			walk(v, visit, node);
	}
}

function literal(node) {
	if (!node)
		return undefined;
	if (node.type == 'Literal')
		return node.value;
	if (node.type == 'ArrayExpression')
		return node.elements.map(literal);
	if (node.type == 'ObjectExpression') {
		const out = {};
		for (const p of node.properties)
			out[p.key.type == 'Identifier' ? p.key.name : p.key.value] = literal(p.value);
		return out;
	}
	// _('text'): the text, marked as translated
	if (node.type == 'CallExpression' && node.callee.type == 'Identifier' && node.callee.name == '_' &&
	    node.arguments.length && node.arguments[0].type == 'Literal')
		return { _: node.arguments[0].value };
	return { expr: node.type };
}

function memberText(node) {
	if (node.type == 'Identifier')
		return node.name;
	if (node.type == 'MemberExpression' && !node.computed)
		return memberText(node.object) + '.' + node.property.name;
	return null;
}

function parseFile(file) {
	const source = fs.readFileSync(file, 'utf8');
	const out = { file, requires: [], declares: [], taboptions: [], tables: {}, forbidden: [] };
	let ast;
	try {
		// LuCI wraps a view or class file in a function, so a top-level `return` is legal there
		ast = acorn.parse(source, { ecmaVersion: 2017, sourceType: 'script', allowReturnOutsideFunction: true,
			locations: true });
	}
	catch (e) {
		out.syntaxError = e.message;
		return out;
	}
	for (const stmt of ast.body) {
		if (stmt.type == 'ExpressionStatement' && stmt.directive)
			out.requires.push(stmt.directive);
	}
	let current = null;
	walk(ast, (node) => {
		const line = node.loc.start.line;
		if (node.type == 'TemplateLiteral' || node.type == 'ArrowFunctionExpression' ||
		    node.type == 'ClassDeclaration' || node.type == 'ClassExpression' ||
		    (node.type == 'VariableDeclaration' && node.kind != 'var'))
			out.forbidden.push({ type: node.type + (node.kind ? ':' + node.kind : ''), line });
		if (node.type == 'VariableDeclarator' && node.id.type == 'Identifier' && node.init &&
		    /^(ObjectExpression|ArrayExpression|Literal)$/.test(node.init.type))
			out.tables[node.id.name] = literal(node.init);
		if (node.type == 'CallExpression') {
			const callee = memberText(node.callee);
			if (callee == 'rpc.declare' && node.arguments[0])
				out.declares.push(literal(node.arguments[0]));
			if (callee && /\.taboption$/.test(callee) && node.arguments.length >= 3) {
				current = {
					tab: literal(node.arguments[0]),
					widget: memberText(node.arguments[1]),
					name: literal(node.arguments[2]),
					title: literal(node.arguments[3]),
					props: {},
					line
				};
				out.taboptions.push(current);
			}
		}
		// o.prop = value right after a taboption(): the option's settings
		if (node.type == 'AssignmentExpression' && node.left.type == 'MemberExpression' && current &&
		    node.left.object.type == 'Identifier' && node.left.object.name == 'o' && !node.left.computed) {
			const v = node.right;
			current.props[node.left.property.name] = (v.type == 'FunctionExpression') ? { expr: 'function' }
				: (v.type == 'CallExpression' && memberText(v.callee)) ? { call: memberText(v.callee) }
				: literal(v);
		}
	});
	return out;
}

// ---- LuCI stand-ins ---------------------------------------------------------------------------------

function installFormat() {
	// LuCI's String.prototype.format, the conversions these files use
	String.prototype.format = function() {
		const args = Array.prototype.slice.call(arguments);
		return this.replace(/%(%|s|d|h|q)/g, (m, c) => {
			if (c == '%')
				return '%';
			if (!args.length)
				throw new Error('format: too few arguments for ' + JSON.stringify(String(this)));
			const v = args.shift();
			return (c == 'd') ? String(Math.floor(+v)) : String(v);
		});
	};
}

function translate(text) {
	return text;
}

const L = {
	bind(fn, self) {
		const extra = Array.prototype.slice.call(arguments, 2);
		return function() { return fn.apply(self, extra.concat(Array.prototype.slice.call(arguments))); };
	},
	toArray(x) {
		if (x == null) return [];
		if (Array.isArray(x)) return x;
		return String(x).trim().split(/\s+/).filter((s) => s.length);
	},
	isObject(x) { return x != null && typeof x == 'object'; },
	resolveDefault(p, def) { return Promise.resolve(p).catch(() => def); }
};

function baseclass() {
	return {
		extend(props) {
			const C = function() {};
			C.prototype = props;
			return C;
		}
	};
}

function loadModule(rel, provided) {
	const file = path.join(RESOURCES, rel);
	const source = fs.readFileSync(file, 'utf8');
	const names = [], values = [];
	for (const m of source.matchAll(/^'require ([\w.]+)(?: as (\w+))?';$/mg)) {
		const mod = m[1], as = m[2] || mod.split('.').pop();
		if (!(mod in provided))
			throw new Error(rel + ' requires ' + mod + ', which the harness does not provide');
		names.push(as);
		values.push(provided[mod]);
	}
	const fn = new Function(['L', '_', 'E'].concat(names).join(','), source);
	return fn.apply(null, [L, translate, provided.E || null].concat(values));
}

function loadJoinline() {
	return new (loadModule('sixbroker/joinline.js', { baseclass: baseclass() }))();
}

function loadOptions() {
	const Cls = loadModule('sixbroker/options.js', { baseclass: baseclass() });
	return new Cls();   // L.require hands out an instance of a module's class
}

// network.js proto_errors: the codes LuCI words itself; registerErrorCode() refuses them
// (openwrt/luci modules/luci-base/htdocs/luci-static/resources/network.js, `var proto_errors`)
const LUCI_ERRORS = ['CONNECT_FAILED', 'INVALID_ADDRESS', 'INVALID_GATEWAY', 'INVALID_LOCAL_ADDRESS',
	'MISSING_ADDRESS', 'MISSING_PEER_ADDRESS', 'NO_DEVICE', 'NO_IFACE', 'NO_IFNAME', 'NO_WAN_ADDRESS',
	'NO_WAN_LINK', 'PEER_RESOLVE_FAIL', 'PIN_FAILED'];

// facts.networks: name -> { ipaddr, device, mtu, wan } (wan: holds the IPv4 default route)
function networkStandIn(facts, registered) {
	const nets = facts.networks || {};
	const proto = (name) => {
		const n = nets[name];
		return {
			getName: () => name,
			getIPAddr: () => n.ipaddr || null,
			getL3Device: () => n.device ? { getName: () => n.device, getMTU: () => (n.mtu != null ? n.mtu : null) } : null
		};
	};
	return {
		registerProtocol(name, methods) { registered.protocols[name] = methods; return methods; },
		// network.js registerErrorCode(): false, and LuCI's words stay, for a code it knows
		registerErrorCode(code, message) {
			if (typeof(code) != 'string' || typeof(message) != 'string' || LUCI_ERRORS.indexOf(code) >= 0 ||
			    registered.errors.hasOwnProperty(code)) {
				registered.refused.push(code);
				return false;
			}
			registered.errors[code] = message;
			return true;
		},
		registerPatternVirtual(re) { registered.virtual.push(String(re)); },
		getIfnameOf(x) { return x; },
		getNetwork(name) { return Promise.resolve(nets.hasOwnProperty(name) ? proto(name) : null); },
		// network.js getWANNetworks(): the interfaces with a 0.0.0.0/0 route
		getWANNetworks() { return Promise.resolve(Object.keys(nets).filter((k) => nets[k].wan).map(proto)); },
		// network.js instantiateDevice(): a Device; getType() 'ethernet' unless the name is marked
		instantiateDevice(name, net) { return { name, network: net, getName: () => name, getType: () => 'ethernet' }; }
	};
}

function loadProtocol(sectionId, facts) {
	installFormat();
	const registered = { protocols: {}, errors: {}, refused: [], virtual: [] };
	const network = networkStandIn(facts, registered);
	const state = { values: facts.uci || {} };
	const uci = { get(conf, sid, opt) { return (conf == 'network' && sid == sectionId) ? state.values[opt] : undefined; } };
	const sbopts = loadOptions();
	// fs.js write(path, data[, mode]) -> rpcd file.write; facts.fsFail: the message it rejects with
	// (rpcd's "No such file or directory" when /etc/sixbroker is missing)
	const files = [];
	const fsStandIn = {
		write(p, data, mode) {
			files.push({ path: p, data, mode: (mode === undefined) ? null : mode });
			return facts.fsFail ? Promise.reject(new Error(facts.fsFail)) : Promise.resolve(0);
		}
	};
	loadModule('protocol/sixbroker.js', { form: model.form, fs: fsStandIn, network, uci, 'tools.widgets': model.widgets,
		'sixbroker.options': sbopts, 'sixbroker.joinline': loadJoinline() });
	const proto = Object.create(registered.protocols.sixbroker);
	proto.sid = sectionId;
	proto._ubus = (key) => (facts.ubus || {})[key];
	// the networks tools/widgets.js NetworkSelect offers: what network.getNetworks() has
	const names = ['loopback', 'lan', 'wan', sectionId].concat(Object.keys(facts.networks || {}));
	return {
		registered, proto, sbopts, state, files,
		// a fresh interface dialog over `values` (interfaces.js renders the protocol's options into a
		// NamedSection of a Map of its own, then renders the map)
		async open(values) {
			state.values = values;
			// a tunlink that could be a UCI section name is taken to be one of the router's networks
			const more = (typeof(values.tunlink) == 'string' && /^[A-Za-z0-9_]+$/.test(values.tunlink)) ? [ values.tunlink ] : [];
			const map = new model.FormMap(values, sectionId, Array.from(new Set(names.concat(more))));
			proto.renderFormOptions(map.section);
			return map.render();
		}
	};
}

async function describeForm(sectionId, facts) {
	const p = loadProtocol(sectionId, facts);
	const map = await p.open(facts.uci || {});
	const kinds = new Map([[model.form.Value, 'Value'], [model.form.DynamicList, 'DynamicList'],
		[model.form.Flag, 'Flag'], [model.form.ListValue, 'ListValue'], [model.widgets.NetworkSelect, 'NetworkSelect']]);
	const device = p.proto.getDevice();
	return {
		errors: p.registered.errors,
		refused: p.registered.refused,
		virtual: p.registered.virtual,
		protocols: Object.keys(p.registered.protocols),
		i18n: p.proto.getI18n(),
		ifname: p.proto.getIfname(),
		device: device ? device.getName() : null,
		deviceType: device ? device.getType() : null,
		packageName: p.proto.getPackageName(),
		opkgPackage: p.proto.getOpkgPackage(),
		isVirtual: p.proto.isVirtual(),
		isFloating: p.proto.isFloating(),
		devices: p.proto.getDevices(),
		options: map.section.children.map((o) => ({
			tab: o.tab, widget: kinds.get(o.constructor), name: o.option, ucioption: o.ucioption || o.option,
			placeholder: (o.placeholder === undefined) ? null : o.placeholder,
			default: (o.default === undefined) ? null : o.default,
			rmempty: o.rmempty, optional: o.optional, datatype: o.datatype || null,
			enabled: o.enabled || null, disabled: o.disabled || null,
			validates: o.hasOwnProperty('validate'), loads: o.hasOwnProperty('load')
		}))
	};
}

// One config through the form as LuCI 23.05 drives it:
//   fields  what every field shows once the dialog is open (null = valid, else the error text)
//   save    the dialog's Save: { ok, error, changes: the UCI writes } (form.js Map.save)
//   typed   each list entry typed into an emptied list's add field and Enter pressed, one by one:
//           { value, verdict (null = valid), added }
//   calls   every value a validator was handed, per option (to show '' is among them)
async function driveForm(p, values) {
	const map = await p.open(values);
	const fields = map.verdicts();
	const calls = {};
	for (const o of map.section.children) {
		const w = o.getUIElement(map.sid);
		calls[o.ucioption || o.option] = [].concat.apply([], w.validators.map((v) => v.calls));
	}
	const flags = {};
	for (const o of map.section.children)
		if (o instanceof model.form.Flag)
			flags[o.option] = o.getUIElement(map.sid).isChecked();
	const save = await map.save();
	const typed = {};
	for (const name of Object.keys(p.sbopts.schema)) {
		if (p.sbopts.schema[name] != 'list' || !Array.isArray(values[name]) || !values[name].length)
			continue;
		const emptied = Object.assign({}, values);
		delete emptied[name];
		const m = await p.open(emptied);
		const w = m.widget(name);
		typed[name] = values[name].map((value) => {
			w.type(value);
			const verdict = w.isValid() ? null : w.getValidationError();
			return { value, verdict, added: w.enter() };
		});
		typed[name + ':save'] = await m.save();
	}
	return { fields, flags, save, typed, calls };
}

async function validateLoop(sectionId) {
	const rl = readline.createInterface({ input: process.stdin });
	const p = loadProtocol(sectionId, {});
	for await (const line of rl) {
		if (!line.trim())
			continue;
		const values = JSON.parse(line);
		let answer;
		try {
			answer = { validate: p.sbopts.validate(values), form: await driveForm(p, values) };
		}
		catch (e) {
			answer = { crash: String(e && e.stack || e) };
		}
		process.stdout.write(JSON.stringify(answer) + '\n');
	}
}

// The model on its own: one option of each widget kind the form uses, each validate() recording what
// LuCI hands it, the dialog opened on `uci`, the given steps done, then Save
async function probeWidgets(script) {
	installFormat();
	const map = new model.FormMap(script.uci || {}, 'x', [ 'loopback', 'lan', 'wan', 'x' ]);
	const s = map.section, seen = [];
	const kinds = { Value: model.form.Value, DynamicList: model.form.DynamicList, Flag: model.form.Flag,
		ListValue: model.form.ListValue, NetworkSelect: model.widgets.NetworkSelect };
	for (const [ name, kind, props ] of script.options) {
		const o = s.option(kinds[kind], name, name);
		Object.assign(o, props || {});
		for (const v of (props || {}).values || [])
			o.value(v);
		o.validate = function(section_id, value) {
			seen.push([ this.option, section_id, value ]);
			return (script.refuse || []).indexOf(value) >= 0 ? 'refused ' + value : true;
		};
	}
	await map.render();
	const out = { render: seen.splice(0) };
	for (const [ action, name, arg ] of script.steps || []) {
		const w = map.widget(name);
		const result = (action == 'save') ? await map.save() : (action == 'remove') ? w.removeItem(arg) : w[action](arg);
		out[action + ':' + name] = { calls: seen.splice(0), result: (result === undefined) ? null : result,
			fields: map.verdicts() };
	}
	return out;
}

// sixbroker/options.js functions on JSON lines [name, arg...] -> one JSON answer a line
async function optionsLoop() {
	installFormat();
	const sbopts = loadOptions();
	const rl = readline.createInterface({ input: process.stdin });
	for await (const line of rl) {
		if (!line.trim())
			continue;
		const [fn, ...args] = JSON.parse(line);
		process.stdout.write(JSON.stringify({ result: sbopts[fn].apply(sbopts, args) }) + '\n');
	}
}

// sixbroker/joinline.js decode() on JSON lines (each a pasted text) -> one JSON answer a line
async function joinLoop() {
	const joinline = loadJoinline();
	const rl = readline.createInterface({ input: process.stdin });
	for await (const line of rl) {
		if (!line.trim())
			continue;
		let answer;
		try {
			answer = joinline.decode(JSON.parse(line));
		}
		catch (e) {
			answer = { crash: String(e && e.stack || e) };
		}
		process.stdout.write(JSON.stringify(answer) + '\n');
	}
}

// A scripted session in the dialog: {facts, steps: [[action, option, arg], ...]}, actions
// type / enter / remove / choose / click / save; answers what each step left shown
async function sessionRun(sectionId, script) {
	const p = loadProtocol(sectionId, script.facts || {});
	const map = await p.open((script.facts || {}).uci || {});
	const out = [{ fields: map.verdicts() }];
	for (const [action, name, arg] of script.steps || []) {
		const w = map.widget(name);
		let result = null;
		if (action == 'save') {
			result = await map.save();
			// the files fs.write() was asked to write, when any
			const written = p.files.splice(0);
			if (written.length)
				result.files = written;
		}
		else if (action == 'remove')
			w.removeItem(arg);
		else if (action == 'placeholder')
			result = w.input ? (w.input.attrs.placeholder === undefined ? null : w.input.attrs.placeholder) : null;
		else
			result = w[action](arg);
		out.push({ step: [action, name, arg], result: (result === undefined) ? null : result, fields: map.verdicts() });
	}
	return out;
}

// ---- the status view --------------------------------------------------------------------------------

function E(tag, attrs, children) {
	if (Array.isArray(attrs) || typeof attrs == 'string' || (attrs && attrs.tag)) {
		children = attrs;
		attrs = {};
	}
	const node = { tag, attrs: attrs || {}, children: [] };
	dom.append(node, children);
	return node;
}

const dom = {
	append(node, children) {
		if (children == null)
			return;
		for (const c of (Array.isArray(children) ? children : [ children ]))
			if (c != null && c !== '')
				node.children.push(c);
	},
	content(node, children) {
		node.children = [];
		dom.append(node, children);
	}
};

function text(node) {
	if (node == null)
		return '';
	if (typeof node != 'object')
		return String(node);
	const inner = node.children.map(text).join(node.tag == 'tr' || node.tag == 'table' ? ' | ' : ' ');
	return (node.tag == 'tr' || node.tag == 'p' || node.tag == 'h2' || node.tag == 'h3') ? inner + '\n' : inner;
}

function findAll(node, pred, out) {
	out = out || [];
	if (node && typeof node == 'object') {
		if (pred(node))
			out.push(node);
		node.children.forEach((c) => findAll(c, pred, out));
	}
	return out;
}

const ACL = path.resolve(__dirname, '../../luci-app/root/usr/share/rpcd/acl.d/luci-app-sixbroker.json');

// What rpcd lets a LuCI login with our ACL group at `level` ('read' or 'write': a write grant
// includes the read one) call on ubus; session.access is granted to every login (luci-base's
// unauthenticated group)
function aclAllows(level, object, method) {
	if (object == 'session' && method == 'access')
		return true;
	const acl = JSON.parse(fs.readFileSync(ACL, 'utf8'))['luci-app-sixbroker'];
	const levels = (level == 'write') ? [ 'read', 'write' ] : [ 'read' ];
	return levels.some((l) => ((((acl[l] || {}).ubus) || {})[object] || []).indexOf(method) >= 0);
}

// rpc.js declare(): positional arguments named by params; `expect` picks a reply key, with its
// default when absent; a call rpcd refuses rejects (UBUS_STATUS_PERMISSION_DENIED)
async function renderView(answers) {
	installFormat();
	const declares = [], calls = [], polls = [];
	const level = answers.session || 'write';
	const rpc = {
		declare(spec) {
			declares.push(spec);
			return function() {
				const args = Array.prototype.slice.call(arguments);
				calls.push({ object: spec.object, method: spec.method, args });
				if (spec.object == 'session' && spec.method == 'access') {
					const [ scope, object, fn ] = args;
					return Promise.resolve(scope == 'ubus' && aclAllows(level, object, fn));
				}
				if (!aclAllows(level, spec.object, spec.method))
					return Promise.reject(new Error('Access denied'));
				const a = answers[spec.method];
				if (a === undefined)
					return Promise.reject(new Error('no answer for ' + spec.method));
				const key = Object.keys(spec.expect || { '': null })[0];
				const reply = JSON.parse(JSON.stringify(a));
				return Promise.resolve(key ? (reply[key] !== undefined ? reply[key] : spec.expect[key]) : reply);
			};
		}
	};
	const poll = { add(fn, interval) { polls.push({ fn, interval }); } };
	const ui = {
		createHandlerFn(ctx, fn) {
			const extra = Array.prototype.slice.call(arguments, 2);
			const f = (typeof fn == 'string') ? ctx[fn] : fn;
			return function(ev) { return f.apply(ctx, extra.concat([ ev ])); };
		}
	};
	const view = { extend(props) { return props; } };
	const sbopts = loadOptions();
	const v = loadModule('view/sixbroker/status.js', { view, rpc, poll, dom, ui, E, 'sixbroker.options': sbopts });
	const data = await v.load();
	const root = v.render(data);
	const before = text(root);
	const buttons = findAll(root, (n) => n.tag == 'button' && typeof n.attrs.click == 'function');
	let after = null;
	if (buttons.length && (answers.diagnose !== undefined || answers.forceDiagnose)) {
		await buttons[0].attrs.click({});
		after = text(root);
	}
	let polled = null;
	if (polls.length) {
		await polls[0].fn();
		polled = text(root);
	}
	return {
		declares, calls, polls: polls.map((p) => p.interval), before, after, polled,
		buttons: buttons.map((b) => text(b))
	};
}

// ---- main -------------------------------------------------------------------------------------------

async function main(argv) {
	const cmd = argv[0];
	if (cmd == 'parse')
		return process.stdout.write(JSON.stringify(argv.slice(1).map(parseFile)) + '\n');
	if (cmd == 'form')
		return process.stdout.write(JSON.stringify(await describeForm(argv[1], JSON.parse(argv[2] || '{}'))) + '\n');
	if (cmd == 'validate')
		return validateLoop(argv[1]);
	if (cmd == 'options')
		return optionsLoop();
	if (cmd == 'join')
		return joinLoop();
	if (cmd == 'sha256') {
		const joinline = loadJoinline();
		const lines = fs.readFileSync(0, 'utf8').split('\n').filter((l) => l.trim());
		return process.stdout.write(lines.map((l) => joinline.sha256hex(JSON.parse(l))).join('\n') + '\n');
	}
	if (cmd == 'probe')
		return process.stdout.write(JSON.stringify(await probeWidgets(JSON.parse(fs.readFileSync(0, 'utf8')))) + '\n');
	if (cmd == 'session')
		return process.stdout.write(JSON.stringify(await sessionRun(argv[1], JSON.parse(fs.readFileSync(0, 'utf8')))) + '\n');
	if (cmd == 'view') {
		const answers = JSON.parse(fs.readFileSync(0, 'utf8'));
		return process.stdout.write(JSON.stringify(await renderView(answers)) + '\n');
	}
	throw new Error('usage: luci_harness.js parse FILE... | form SECTION [FACTS] | validate SECTION | session SECTION | view');
}

main(process.argv.slice(2)).catch((e) => {
	process.stderr.write(String(e && e.stack || e) + '\n');
	process.exit(1);
});
