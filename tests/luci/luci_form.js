'use strict';
/*
 * LuCI 23.05's form machinery, as far as a protocol form meets it: the widgets (ui.js), the option
 * classes (form.js, tools/widgets.js) and the field validator (validation.js), without a browser.
 *
 * It is a model written from upstream's code, not a copy: every rule below names the upstream function
 * it follows (openwrt/luci, modules/luci-base/htdocs/luci-static/resources/ ui.js, form.js,
 * validation.js and luci-mod-network's tools/widgets.js, in their ES5 form of the 23.05 series; later
 * versions moved to ES6 classes and form.js getValidator()).  What it keeps
 * from the DOM is what those functions read: an element's `value`, its parent chain (validation needs
 * the field inside a `[data-field]` frame), its `cbi-input-invalid` class, and events that bubble.
 *
 * The user's actions are functions too (type into a field, press Enter in a list's add field, remove
 * an entry, pick a network), each firing the events the browser would, in the order ui.js binds them.
 */

// ---- a DOM stand-in ---------------------------------------------------------------------------------

class Node {
	constructor(tag, attrs) {
		this.tag = tag;
		this.attrs = Object.assign({}, attrs || {});
		this.parent = null;
		this.children = [];
		this.listeners = {};
		this.classes = new Set();
		this.value = undefined;     // a <div> has no value: validation.js then checks ''
	}
	append(child) {
		child.parent = this;
		this.children.push(child);
		return child;
	}
	addEventListener(type, fn) {
		(this.listeners[type] = this.listeners[type] || []).push(fn);
	}
	// CustomEvent with bubbles: true, as every event ui.js and validation.js dispatch
	dispatch(type, detail) {
		const ev = { type, detail: detail || {}, target: this };
		for (let n = this; n; n = n.parent)
			for (const fn of (n.listeners[type] || []).slice())
				fn(Object.assign({}, ev, { currentTarget: n }));
	}
	closest(pred) {
		for (let n = this; n; n = n.parent)
			if (pred(n))
				return n;
		return null;
	}
}

// ---- validation.js Validator.validate() ---------------------------------------------------------------

const DATATYPES = {
	// the default when an option sets none (ui.js passes `datatype || 'string'`): any text
	string: () => true
};

class Validator {
	constructor(field, type, optional, vfunc) {
		if (!DATATYPES.hasOwnProperty(type))
			throw new Error('the LuCI model has no datatype ' + JSON.stringify(type) + ': add it from validation.js');
		this.field = field;
		this.type = type;
		this.optional = optional;
		this.vfunc = vfunc;
		this.calls = [];
	}
	validate() {
		// "element is detached": not under <body> and not inside a form frame
		if (!this.field.closest((n) => n.tag == 'body' || n.attrs['data-field'] != null))
			return true;
		this.field.classes.delete('cbi-input-invalid');
		const value = (this.field.value != null) ? this.field.value : '';
		let valid, error = null;
		if (value.length === 0) {
			valid = !!this.optional;
			error = 'non-empty value';
		}
		else {
			valid = DATATYPES[this.type](value);
		}
		if (valid !== true) {
			this.field.classes.add('cbi-input-invalid');
			this.field.dispatch('validation-failure', { message: 'Expecting: ' + error });
			return false;
		}
		if (typeof(this.vfunc) == 'function') {
			this.calls.push(value);
			valid = this.vfunc(value);
		}
		if (valid !== true) {
			this.field.classes.add('cbi-input-invalid');
			this.field.dispatch('validation-failure', { message: valid });
			return false;
		}
		this.field.dispatch('validation-success');
		return true;
	}
}

// ui.js UI.addValidator(): bind the validator to the events, run it once (the field is still detached
// while the widget renders, so that first run returns true without asking anything)
function addValidator(field, type, optional, vfunc, events, log) {
	const v = new Validator(field, type, optional, vfunc);
	const fn = () => v.validate();
	for (const e of events)
		field.addEventListener(e, fn);
	fn();
	if (log)
		log.push(v);
	return fn;
}

// ---- ui.js widgets ----------------------------------------------------------------------------------

class UIElement {
	// ui.js UIElement.setUpdateEvents(): optional defaults to true when the options do not say
	setUpdateEvents(target, ...events) {
		const datatype = this.options.datatype,
		      optional = this.options.hasOwnProperty('optional') ? this.options.optional : true,
		      validate = this.options.validate;
		this.registerEvents(target, 'widget-update', events);
		if (!datatype && !validate)
			return;
		this.vfunc = addValidator(target, datatype || 'string', optional, validate, events, this.validators);
		this.node.addEventListener('validation-success', () => { this.validState = true; this.validationError = ''; });
		this.node.addEventListener('validation-failure', (ev) => { this.validState = false; this.validationError = ev.detail.message; });
	}
	setChangeEvents(target, ...events) {
		for (const e of events)
			target.addEventListener(e, () => { this.node.attrs['data-changed'] = 'true'; });
		this.registerEvents(target, 'widget-change', events);
	}
	registerEvents(target, synevent, events) {
		for (const e of events)
			target.addEventListener(e, () => this.node.dispatch(synevent));
	}
	isValid() { return this.validState !== false; }
	getValidationError() { return this.validationError || ''; }
	triggerValidation() {
		if (typeof(this.vfunc) != 'function')
			return false;
		const was = this.isValid();
		this.vfunc();
		return was != this.isValid();
	}
	setPlaceholder(value) {
		const input = this.input;
		if (input)
			input.attrs.placeholder = (value != null && value != '') ? value : undefined;
	}
}

class Textfield extends UIElement {
	constructor(value, options) {
		super();
		this.value = value;
		this.options = Object.assign({ optional: true, password: false }, options);
		this.validators = [];
	}
	render() {
		const frame = new Node('div', { id: this.options.id });
		this.input = frame.append(new Node('input', { type: 'text', placeholder: this.options.placeholder }));
		this.input.value = (this.value != null) ? String(this.value) : '';
		this.node = frame;
		this.setUpdateEvents(this.input, 'keyup', 'blur');
		this.setChangeEvents(this.input, 'change');
		return frame;
	}
	getValue() { return this.input.value; }
	// ui.js UITextfield.setValue(): sets the <input>'s value, no event (no validation, no onchange)
	setValue(value) { this.input.value = (value != null) ? String(value) : ''; }
	// the user: type the text, leave the field (keyup per key, then change and blur on leaving)
	type(text) {
		this.input.value = text;
		this.input.dispatch('keyup');
		this.input.dispatch('change');
		this.input.dispatch('blur');
	}
}

class Checkbox extends UIElement {
	constructor(value, options) {
		super();
		this.value = value;
		this.options = Object.assign({ value_enabled: '1', value_disabled: '0' }, options);
		this.validators = [];
	}
	render() {
		const frame = new Node('div', { id: this.options.id });
		// the validator reads the checkbox's value attribute: value_enabled, checked or not
		this.input = frame.append(new Node('input', { type: 'checkbox' }));
		this.input.value = this.options.value_enabled;
		this.input.checked = (this.value == this.options.value_enabled);
		this.node = frame;
		this.setUpdateEvents(this.input, 'click', 'blur');
		this.setChangeEvents(this.input, 'change');
		return frame;
	}
	isChecked() { return this.input.checked; }
	getValue() { return this.isChecked() ? this.options.value_enabled : this.options.value_disabled; }
	click() {
		this.input.checked = !this.input.checked;
		this.input.dispatch('click');
		this.input.dispatch('change');
	}
}

// ui.js UISelect (a ListValue): a <select>; a choice '' makes it optional
class Select extends UIElement {
	constructor(value, choices, options) {
		super();
		this.values = Array.isArray(value) ? value : (value != null && value != '') ? [ value ] : [];
		this.choices = choices || {};
		this.options = Object.assign({ multiple: false, widget: 'select' }, options);
		if (this.choices.hasOwnProperty(''))
			this.options.optional = true;
		this.validators = [];
	}
	render() {
		const frame = new Node('div', { id: this.options.id });
		this.select = frame.append(new Node('select'));
		const keys = Object.keys(this.choices).filter((k) => k !== '');
		const offered = (this.options.optional ? [ '' ] : []).concat(keys);
		// a <select> with nothing selected shows (and has the value of) its first option
		const chosen = offered.find((k) => this.values.indexOf(k) >= 0);
		this.select.value = (chosen !== undefined) ? chosen : (offered.length ? offered[0] : '');
		this.offered = offered;
		this.node = frame;
		this.setUpdateEvents(this.select, 'change', 'click', 'blur');
		this.setChangeEvents(this.select, 'change');
		return frame;
	}
	getValue() { return this.select.value; }
	choose(value) {
		if (this.offered.indexOf(value) < 0)
			throw new Error('no choice ' + JSON.stringify(value));
		this.select.value = value;
		this.select.dispatch('change');
	}
}

// ui.js UIDropdown, single choice (tools/widgets.js NetworkSelect): the validator sits on the
// <div class="cbi-dropdown">, whose `value` saveValues() sets to the chosen value ('' for none)
class Dropdown extends UIElement {
	constructor(value, choices, options) {
		super();
		this.values = Array.isArray(value) ? value : (value != null && value != '') ? [ value ] : [];
		this.choices = choices || {};
		this.options = Object.assign({ multiple: Array.isArray(value), optional: true, create: false }, options);
		this.validators = [];
	}
	render() {
		const sb = new Node('div', { id: this.options.id, 'class': 'cbi-dropdown' });
		const keys = Object.keys(this.choices).sort();
		this.items = keys.map((k) => ({ value: k, placeholder: false }));
		// bind(): an optional single dropdown gets a placeholder entry unless a '' choice exists
		if (this.options.optional && keys.indexOf('') < 0)
			this.items.unshift({ value: '', placeholder: true });
		const sel = this.items.find((it) => !it.placeholder && this.values.indexOf(it.value) >= 0);
		this.selected = sel || this.items[0] || null;
		this.node = sb;
		this.saveValues();
		this.setUpdateEvents(sb, 'cbi-dropdown-open', 'cbi-dropdown-close');
		this.setChangeEvents(sb, 'cbi-dropdown-change', 'cbi-dropdown-close');
		return sb;
	}
	saveValues() {
		const s = this.selected;
		this.hidden = (s && !s.placeholder) ? [ s.value ] : [];
		this.node.value = this.hidden.join(' ');
		this.node.dispatch('cbi-dropdown-change');
	}
	getValue() { return this.options.multiple ? this.hidden.slice() : this.hidden[0]; }
	// the user: open the list, click an entry (handleClick -> toggleItem -> closeDropdown, saveValues:
	// only cbi-dropdown-change is dispatched on the way)
	choose(value) {
		const it = this.items.find((i) => i.value === value);
		if (!it)
			throw new Error('no choice ' + JSON.stringify(value));
		this.selected = it;
		this.saveValues();
	}
}

// ui.js UIDynamicList: its options are forced optional; the add field gets its own validator (always
// optional), the container <div> the widget's one, so both hand '' to validate()
class DynamicList extends UIElement {
	constructor(values, choices, options) {
		super();
		this.values = Array.isArray(values) ? values : (values != null && values != '') ? [ values ] : [];
		this.choices = choices;
		this.options = Object.assign({}, options, { multiple: false, optional: true });
		this.validators = [];
	}
	render() {
		const dl = new Node('div', { id: this.options.id, 'class': 'cbi-dynlist' });
		const add = dl.append(new Node('div', { 'class': 'add-item' }));
		this.input = add.append(new Node('input', { type: 'text', placeholder: this.options.placeholder }));
		this.input.value = '';
		if (this.options.datatype || this.options.validate)
			addValidator(this.input, this.options.datatype || 'string', true, this.options.validate,
				[ 'blur', 'keyup' ], this.validators);
		this.items = [];
		this.dl = dl;
		for (const v of this.values)
			this.addItem(v);
		this.node = dl;
		this.setUpdateEvents(dl, 'cbi-dynlist-change');
		this.setChangeEvents(dl, 'cbi-dynlist-change');
		return dl;
	}
	addItem(value) {
		if (this.items.indexOf(value) < 0)
			this.items.push(value);
		this.dl.dispatch('cbi-dynlist-change', { value, add: true });
	}
	removeItem(index) {
		const value = this.items.splice(index, 1)[0];
		this.dl.dispatch('cbi-dynlist-change', { value, remove: true });
	}
	// ui.js UIDynamicList.setValue(): removeItem() for each entry, then addItem() for each new one
	// (each dispatches cbi-dynlist-change, so the container's validator runs); the add field stays
	setValue(values) {
		values = Array.isArray(values) ? values : (values != null && values != '') ? [ values ] : [];
		while (this.items.length)
			this.removeItem(0);
		for (const v of values)
			this.addItem(v);
	}
	getValue() {
		const v = this.items.slice(), t = this.input.value;
		if (t != null && /\S/.test(t) && !this.input.classes.has('cbi-input-invalid') && v.indexOf(t) < 0)
			v.push(t);
		return v;
	}
	// the user: type an entry into the add field, press Enter (handleKeydown adds it unless the
	// field is marked invalid, empties the field and blurs it)
	type(text) {
		this.input.value = text;
		this.input.dispatch('keyup');
	}
	enter() {
		const t = this.input.value;
		if (t.length && !this.input.classes.has('cbi-input-invalid')) {
			this.addItem(t);
			this.input.value = '';
			this.input.dispatch('blur');
			return true;
		}
		return false;
	}
}

// ---- form.js option classes ------------------------------------------------------------------------

class AbstractValue {
	// form.js CBIAbstractValue.__init__
	constructor(map, section, option, title, description) {
		this.map = map;
		this.section = section;
		this.option = option;
		this.title = title;
		this.description = description;
		this.deps = [];
		this.rmempty = true;
		this.default = null;
		this.optional = false;
		this.retain = false;
		this.data = {};
	}
	cbid(sid) { return 'cbid.network.' + sid + '.' + this.option; }
	load(sid) { return this.map.data.get('network', sid, this.ucioption || this.option); }
	cfgvalue(sid, value) {
		if (arguments.length == 2)
			this.data[sid] = value;
		return this.data[sid];
	}
	validate(sid, value) { return true; }
	getUIElement(sid) { return this.map.widgets[this.cbid(sid)] || null; }
	formvalue(sid) { const e = this.getUIElement(sid); return e ? e.getValue() : null; }
	isValid(sid) { const e = this.getUIElement(sid); return e ? e.isValid() : true; }
	getValidationError(sid) { const e = this.getUIElement(sid); return e ? e.getValidationError() : ''; }
	isActive(sid) { return this.map.frames[this.cbid(sid)] != null; }
	triggerValidation(sid) { const e = this.getUIElement(sid); return e ? e.triggerValidation() : true; }
	// form.js CBIAbstractValue.parse(): an invalid field stops the save; an empty one is removed
	// when rmempty or optional, else refused
	parse(sid) {
		if (!this.isActive(sid))
			return this.retain ? null : this.remove(sid);
		if (!this.isValid(sid))
			throw new TypeError('Option "' + (this.title || this.option) + '" contains an invalid input value. ' +
				this.getValidationError(sid));
		const cval = this.cfgvalue(sid), fval = this.formvalue(sid);
		if (fval == null || fval == '') {
			if (this.rmempty || this.optional)
				return this.remove(sid);
			throw new TypeError('Option "' + (this.title || this.option) + '" must not be empty.');
		}
		if (this.forcewrite || !isEqual(cval, fval))
			return this.write(sid, fval);
		return null;
	}
	write(sid, value) { this.map.data.set('network', sid, this.ucioption || this.option, value); }
	// form.js remove(): kept when another active option writes the same UCI option
	remove(sid) {
		const name = this.ucioption || this.option;
		for (const o of this.section.children)
			if (o !== this && o.ucioption != null && (o.ucioption || o.option) == name && o.isActive(sid))
				return;
		this.map.data.unset('network', sid, name);
	}
	// form.js Value.renderFrame(): the widget inside its [data-field] frame; a change re-runs the
	// map's dependency check (which validates every active field) and then onchange
	renderFrame(sid, node) {
		const frame = new Node('div', { 'data-field': this.cbid(sid) });
		frame.append(node);
		frame.addEventListener('widget-change', () => this.map.checkDepends());
		const state = {};
		frame.addEventListener('widget-change', (ev) => {
			if (typeof(this.onchange) != 'function')
				return;
			const value = this.formvalue(sid);
			if (isEqual(value, state.previousValue))
				return;
			state.previousValue = value;
			this.onchange.call(this, ev, sid, value);
		});
		this.map.frames[this.cbid(sid)] = frame;
		return frame;
	}
	widgetOptions(sid) {
		return { id: this.cbid(sid), optional: this.optional || this.rmempty, datatype: this.datatype,
			placeholder: this.placeholder, validate: bind(this.validate, this, sid) };
	}
}

// L.bind: validate(section_id, value) with the option as `this`
function bind(fn, self, ...extra) {
	return function(...args) { return fn.apply(self, extra.concat(args)); };
}

class Value extends AbstractValue {
	renderWidget(sid, cfgvalue) {
		const value = (cfgvalue != null) ? cfgvalue : this.default;
		return new Textfield(Array.isArray(value) ? value.join(' ') : value, this.widgetOptions(sid));
	}
}

class DynamicListValue extends Value {
	renderWidget(sid, cfgvalue) {
		const value = (cfgvalue != null) ? cfgvalue : this.default;
		return new DynamicList(toArray(value), null, this.widgetOptions(sid));
	}
}

class ListValue extends Value {
	constructor(...args) {
		super(...args);
		this.keylist = [];
	}
	value(key) { this.keylist.push(String(key)); }
	renderWidget(sid, cfgvalue) {
		const choices = {};
		for (const k of this.keylist)
			choices[k] = k;
		// form.js ListValue passes `optional: this.optional` (not rmempty)
		return new Select((cfgvalue != null) ? cfgvalue : this.default, choices,
			Object.assign(this.widgetOptions(sid), { optional: this.optional }));
	}
}

class FlagValue extends Value {
	constructor(...args) {
		super(...args);
		this.enabled = '1';
		this.disabled = '0';
		this.default = this.disabled;
	}
	renderWidget(sid, cfgvalue) {
		// form.js FlagValue.renderWidget() passes no `optional`: the checkbox validator is optional
		return new Checkbox((cfgvalue != null) ? cfgvalue : this.default, { id: this.cbid(sid),
			value_enabled: this.enabled, value_disabled: this.disabled, validate: bind(this.validate, this, sid) });
	}
	formvalue(sid) { const e = this.getUIElement(sid); return (e && e.isChecked()) ? this.enabled : this.disabled; }
	parse(sid) {
		if (!this.isActive(sid))
			return this.retain ? null : this.remove(sid);
		const fval = this.formvalue(sid);
		if (!this.isValid(sid))
			throw new TypeError('Option "' + (this.title || this.option) + '" contains an invalid input value. ' +
				this.getValidationError(sid));
		if (fval == this.default && (this.optional || this.rmempty))
			return this.remove(sid);
		return this.write(sid, fval);
	}
}

// tools/widgets.js CBINetworkSelect: a Dropdown of the router's networks (loopback and `exclude` left
// out), '' ("unspecified") offered when rmempty or optional; a configured name that is no network is
// not among the choices, so the widget shows "unspecified" and a save removes it
class NetworkSelect extends ListValue {
	load(sid) {
		this.networks = this.map.networks;
		return super.load(sid);
	}
	renderWidget(sid, cfgvalue) {
		const values = toArray((cfgvalue != null) ? cfgvalue : this.default), choices = {}, picked = [];
		if (!this.multiple && (this.rmempty || this.optional))
			choices[''] = 'unspecified';
		for (const name of this.networks) {
			if (name == 'loopback' || name == this.exclude)
				continue;
			if (values.indexOf(name) >= 0)
				picked.push(name);
			choices[name] = name;
		}
		return new Dropdown(this.multiple ? picked : picked[0], choices, Object.assign(this.widgetOptions(sid), {
			multiple: this.multiple, create: !this.nocreate }));
	}
}

// form.js isEqual (the parts a string or a list of strings meets)
function isEqual(x, y) {
	if (x != null && y != null && typeof(x) != typeof(y))
		return false;
	if ((x == null) != (y == null))
		return false;
	if (Array.isArray(x))
		return x.length == y.length && x.every((v, i) => isEqual(v, y[i]));
	return x == y;
}

function toArray(x) {
	if (x == null) return [];
	if (Array.isArray(x)) return x;
	return String(x).trim().split(/\s+/).filter((s) => s.length);
}

// ---- the section and the map ------------------------------------------------------------------------

// form.js NamedSection: options in tabs; formvalue(sid, name) answers the first child whose `option`
// (not ucioption) is `name`: the widget's value once rendered, else the loaded value
class Section {
	constructor(map, sid) {
		this.map = map;
		this.section = sid;
		this.children = [];
	}
	option(Cls, name, title, description) {
		const o = new Cls(this.map, this, name, title, description);
		this.children.push(o);
		return o;
	}
	taboption(tab, Cls, name, title, description) {
		const o = this.option(Cls, name, title, description);
		o.tab = tab;
		return o;
	}
	getOption(name) { return this.children.find((o) => o.option == name) || null; }
	formvalue(sid, name) {
		for (const o of this.children)
			if (o.option == name)
				return this.map.root ? o.formvalue(sid) : o.cfgvalue(sid);
		return null;
	}
	getUIElement(sid, name) {
		const o = this.getOption(name);
		return o ? o.getUIElement(sid) : null;
	}
}

// form.js Map: load every option, render the widgets into their frames, then checkDepends() (which
// triggers every active field's validation); save() = checkDepends() + parse() of each option
class FormMap {
	constructor(uciValues, sid, networks) {
		this.uci = uciValues;
		this.sid = sid;
		this.networks = networks || [];
		this.widgets = {};
		this.frames = {};
		this.root = null;
		this.changes = [];
		const self = this;
		this.data = {
			get(conf, s, opt) { return (conf == 'network' && s == sid) ? self.uci[opt] : undefined; },
			set(conf, s, opt, value) { self.changes.push([ 'set', opt, value ]); },
			unset(conf, s, opt) { if (self.uci[opt] != null) self.changes.push([ 'unset', opt ]); }
		};
		this.section = new Section(this, sid);
	}
	async render() {
		const sid = this.sid;
		for (const o of this.section.children)
			o.cfgvalue(sid, await o.load(sid));
		this.root = new Node('div', { 'class': 'cbi-map' });
		for (const o of this.section.children) {
			const widget = o.renderWidget(sid, o.cfgvalue(sid));
			this.widgets[o.cbid(sid)] = widget;
			this.root.append(o.renderFrame(sid, widget.render()));
		}
		this.checkDepends();
		return this;
	}
	checkDepends() {
		for (const o of this.section.children)
			if (o.isActive(this.sid))
				o.triggerValidation(this.sid);
	}
	// GridSection.handleModalSave -> map.save(null, true): silent, the dialog stays open on an error.
	// form.js Map.parse() is Promise.all() over the options' parse(), each Promise.resolve(write(...)):
	// a write() may return a promise (ours writes a file), and its rejection stops the save too
	async save() {
		this.checkDepends();
		this.changes = [];
		try {
			const tasks = [];
			for (const o of this.section.children)
				tasks.push(o.parse(this.sid));
			await Promise.all(tasks);
		}
		catch (e) {
			return { ok: false, error: e.message, changes: [] };
		}
		return { ok: true, changes: this.changes };
	}
	widget(name) { return this.section.getUIElement(this.sid, name); }
	verdicts() {
		const out = {};
		for (const o of this.section.children) {
			const w = o.getUIElement(this.sid);
			out[o.ucioption || o.option] = w.isValid() ? null : w.getValidationError();
		}
		return out;
	}
}

module.exports = {
	Node, Validator, FormMap, Section,
	form: { Value, DynamicList: DynamicListValue, ListValue, Flag: FlagValue },
	widgets: { NetworkSelect },
	ui: { Textfield, Checkbox, Select, Dropdown, DynamicList }
};
