'use strict';
/*
 * Test harness for the LuCI app's JavaScript, driven by tests/host/test_luci*.py and test_rpcd*.py.
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

function loadOptions() {
	const Cls = loadModule('sixbroker/options.js', { baseclass: baseclass() });
	return new Cls();   // L.require hands out an instance of a module's class
}

function Option(name, title, description) {
	this.option = name;
	this.title = title;
	this.description = description;
	this.rmempty = true;
	this.optional = false;
}

function widgetClass(kind, extra) {
	const C = function(name, title, description) {
		Option.call(this, name, title, description);
		this.widget = kind;
		Object.assign(this, extra || {});
	};
	return C;
}

function loadProtocol(sectionId, config) {
	installFormat();
	const registered = { protocols: {}, errors: {}, virtual: [] };
	const network = {
		registerProtocol(name, methods) { registered.protocols[name] = methods; return methods; },
		registerErrorCode(code, message) { registered.errors[code] = message; return true; },
		registerPatternVirtual(re) { registered.virtual.push(String(re)); },
		getIfnameOf(x) { return x; }
	};
	const uci = { get(conf, sid, opt) { return (conf == 'network' && sid == sectionId) ? config.values[opt] : null; } };
	const form = {
		Value: widgetClass('Value'),
		DynamicList: widgetClass('DynamicList'),
		Flag: widgetClass('Flag', { enabled: '1', disabled: '0' }),
		ListValue: widgetClass('ListValue')
	};
	const widgets = { NetworkSelect: widgetClass('NetworkSelect') };
	const sbopts = loadOptions();
	loadModule('protocol/sixbroker.js', { form, network, uci, 'tools.widgets': widgets, 'sixbroker.options': sbopts });

	const options = [];
	const section = {
		section: sectionId,
		taboption(tab, Cls, name, title, description) {
			const o = new Cls(name, title, description);
			o.tab = tab;
			o.section = section;
			options.push(o);
			return o;
		},
		getOption(name) { return options.find((o) => o.option == name) || null; },
		formvalue(sid, name) {
			const o = section.getOption(name);
			if (!o)
				return null;
			const v = config.values[o.ucioption || o.option];
			if (o.widget == 'DynamicList')
				return (v == null) ? [] : Array.isArray(v) ? v : [ v ];
			return (v == null) ? '' : v;
		},
		getUIElement() { return null; }
	};
	const proto = registered.protocols.sixbroker;
	proto.sid = sectionId;
	proto._ubus = () => null;
	proto.renderFormOptions(section);
	return { registered, proto, options, sbopts };
}

function describeForm(sectionId) {
	const config = { values: {} };
	const { registered, proto, options } = loadProtocol(sectionId, config);
	return {
		errors: registered.errors,
		virtual: registered.virtual,
		protocols: Object.keys(registered.protocols),
		i18n: proto.getI18n(),
		ifname: proto.getIfname(),
		packageName: proto.getPackageName(),
		opkgPackage: proto.getOpkgPackage(),
		isVirtual: proto.isVirtual(),
		isFloating: proto.isFloating(),
		devices: proto.getDevices(),
		options: options.map((o) => ({
			tab: o.tab, widget: o.widget, name: o.option, ucioption: o.ucioption || o.option,
			placeholder: (o.placeholder === undefined) ? null : o.placeholder,
			default: (o.default === undefined) ? null : o.default,
			rmempty: o.rmempty, optional: o.optional,
			enabled: o.enabled || null, disabled: o.disabled || null,
			validates: typeof(o.validate) == 'function', loads: typeof(o.load) == 'function'
		}))
	};
}

// What a field shows for a config: validation.js first refuses an empty non-optional field, then asks
// the option's validate(); a DynamicList asks for each entry.  Answers are words; "" = accepted.
function fieldVerdicts(form, config) {
	const out = {};
	const sid = form.proto.sid;
	for (const o of form.options) {
		if (typeof(o.validate) != 'function')
			continue;
		const optional = o.optional || o.rmempty;
		const raw = config.values[o.ucioption || o.option];
		const verdicts = [];
		if (o.widget == 'DynamicList') {
			const items = (raw == null || raw === '') ? [] : Array.isArray(raw) ? raw : [ raw ];
			if (!items.length && !optional)
				verdicts.push({ empty: true });
			for (const item of items) {
				const r = o.validate.call(o, sid, item);
				if (r !== true)
					verdicts.push({ text: r });
			}
		}
		else {
			const value = (raw == null) ? '' : String(raw);
			if (value === '' && !optional)
				verdicts.push({ empty: true });
			else {
				const r = o.validate.call(o, sid, value);
				if (r !== true)
					verdicts.push({ text: r });
			}
		}
		out[o.ucioption || o.option] = verdicts;
	}
	// a Flag shows what load() makes of the UCI value: checked, unchecked, or neither (kept as is)
	const flags = {};
	for (const o of form.options)
		if (o.widget == 'Flag' && typeof(o.load) == 'function')
			flags[o.option] = o.load.call(o, sid);
	return { fields: out, flags };
}

function validateLoop(sectionId) {
	const config = { values: {} };
	const form = loadProtocol(sectionId, config);
	const rl = readline.createInterface({ input: process.stdin });
	rl.on('line', (line) => {
		if (!line.trim())
			return;
		const values = JSON.parse(line);
		config.values = values;
		let answer;
		try {
			answer = { validate: form.sbopts.validate(values), form: fieldVerdicts(form, config) };
		}
		catch (e) {
			answer = { crash: String(e && e.stack || e) };
		}
		process.stdout.write(JSON.stringify(answer) + '\n');
	});
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

async function renderView(answers) {
	installFormat();
	const declares = [], calls = [], polls = [];
	const rpc = {
		declare(spec) {
			declares.push(spec);
			return function() {
				const args = Array.prototype.slice.call(arguments);
				calls.push({ object: spec.object, method: spec.method, args });
				const a = answers[spec.method];
				return (a === undefined) ? Promise.reject(new Error('no answer for ' + spec.method))
					: Promise.resolve(JSON.parse(JSON.stringify(a)));
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
	if (buttons.length && answers.diagnose !== undefined) {
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
		return process.stdout.write(JSON.stringify(describeForm(argv[1])) + '\n');
	if (cmd == 'validate')
		return validateLoop(argv[1]);
	if (cmd == 'view') {
		const answers = JSON.parse(fs.readFileSync(0, 'utf8'));
		return process.stdout.write(JSON.stringify(await renderView(answers)) + '\n');
	}
	throw new Error('usage: luci_harness.js parse FILE... | form SECTION | validate SECTION | view');
}

main(process.argv.slice(2)).catch((e) => {
	process.stderr.write(String(e && e.stack || e) + '\n');
	process.exit(1);
});
