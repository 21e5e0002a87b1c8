'use strict';
'require form';
'require fs';
'require network';
'require uci';
'require tools.widgets as widgets';
'require sixbroker.options as sbopts';
'require sixbroker.joinline as joinline';

/*
 * The "sixbroker" protocol under Network -> Interfaces: a 6in4 tunnel to your own broker.
 *
 * Every field is checked by sixbroker/options.js, the browser's copy of the handler's own validator
 * (src/sixbroker/core/options.py), so the form refuses what the handler would refuse, with its words.
 * Empty fields show what the handler will use instead.
 *
 * Not here on purpose: defaultroute and metric.  LuCI's interfaces.js replaces any protocol's own
 * with its generic "Use default gateway" and "Use gateway metric" (nettools.replaceOption), and
 * netifd applies both to the routes a handler sends (options.NETIFD_OWNS).
 */

network.registerPatternVirtual(/^sb-.+$/);

Object.keys(sbopts.errors).forEach(function(code) {
	network.registerErrorCode(code, sbopts.errors[code]);
});

/* form option -> UCI option, where they differ (see the device field below) */
var UCI_NAME = { _sixbroker_device: 'device' };

/* The values the form holds now, as the handler would get them. */
function formConfig(option, section_id) {
	var config = {};

	Object.keys(sbopts.schema).forEach(function(name) {
		var field = name;

		for (var k in UCI_NAME)
			if (UCI_NAME[k] == name)
				field = k;

		var v = option.section.formvalue(section_id, field);

		if (v == null)
			v = uci.get('network', section_id, name);

		config[name] = v;
	});

	return config;
}

/*
 * A field's validate(): the first problem the handler would report for this option, in its words.
 *
 * LuCI 23.05 calls it with '' for an empty field, and a DynamicList calls it only with '' (for its
 * container <div> and for its empty "add" field) or with the text typed into that add field: the
 * entries already in the list are never handed over one by one (ui.js UIDynamicList.render()/bind()).
 * So for a list '' means "the list as it stands", checked whole, and any other value is a new entry
 * checked after the entries before it, the order in which the handler accepts them.
 */
function validator(name) {
	return function(section_id, value) {
		var config = formConfig(this, section_id), index = null;

		if (sbopts.schema[name] == 'list') {
			var v = config[name],
			    items = Array.isArray(v) ? v.slice() : (v ? [ v ] : []);

			if (value !== '' && value != null) {
				/* UIDynamicList.getValue() appends the add field's text unless the list has it already */
				if (items.length && items[items.length - 1] === value && items.indexOf(value) == items.length - 1)
					items.pop();

				index = items.length;
				items.push(value);
			}

			config[name] = items;
		}
		else {
			config[name] = value;
		}

		var errors = sbopts.validate(config);

		for (var i = 0; i < errors.length; i++)
			if (errors[i].option == name && (index === null || errors[i].index === index))
				return sbopts.errorText(errors[i].code);

		return true;
	};
}

/*
 * What the handler would pick for an empty local address and MTU: the IPv4 address and the device MTU
 * (less 20) of the tunnel link, or of the WAN (the interface holding the IPv4 default route, as the
 * stock 6in4.js does for its local address).  network.js has both, so no backend call.
 */
function linkFacts(section_id) {
	var tunlink = uci.get('network', section_id, 'tunlink');
	var found = tunlink ? network.getNetwork(tunlink).then(function(net) { return net ? [ net ] : []; })
		: network.getWANNetworks();

	return L.resolveDefault(found, []).then(function(nets) {
		var net = nets.length ? nets[0] : null,
		    dev = net ? net.getL3Device() : null;

		return { ipaddr: net ? net.getIPAddr() : null, mtu: dev ? dev.getMTU() : null };
	});
}

/* The broker's tunnel address the handler would use, derived from the form's ip6addr. */
function gatewayPlaceholder(ip6addr) {
	if (!ip6addr)
		return _('derived from the local IPv6 address');

	return sbopts.gatewayFor(ip6addr) || _('cannot be derived from this local IPv6 address: set it');
}

/* Fields whose verdict depends on this one are checked again when it changes. */
function recheck(names) {
	return function(ev, section_id) {
		for (var i = 0; i < names.length; i++) {
			var elem = this.section.getUIElement(section_id, names[i]);

			if (elem && elem.triggerValidation)
				elem.triggerValidation();
		}
	};
}

/*
 * The one-paste join: the line `sixbroker server add` prints, decoded in the browser
 * (sixbroker/joinline.js, core/joinline.py's twin), fills the fields the way `sixbroker join` fills the
 * section (core/tunnelconf.py options(): the same UCI options, the same certificate file name).
 */
var CERT_DIR = '/etc/sixbroker';

function certPath(section_id) {
	return CERT_DIR + '/' + section_id + '.pem';
}

/* tunnelconf.options() of a join line's fields, by form field; '' / [] clear a field the line leaves out */
function joinValues(fields, section_id) {
	return {
		peeraddr: fields.peer,
		ip6addr: fields.ip6addr,
		ip6gw: fields.ip6gw,
		ip6prefix: fields.ip6prefix.slice(),
		mtu: String(fields.mtu),
		tunnelid: fields.name,
		updatekey: fields.key,
		updateurl: fields.url,
		/* a broker with a CA-signed certificate sends none: the system's CA store checks it */
		updatecert: fields.cert ? certPath(section_id) : ''
	};
}

/* LuCI calls it with '' for the empty field (validation.js, optional): nothing pasted is fine */
function validateJoin(section_id, value) {
	if (value == null || value === '')
		return true;

	var r = joinline.decode(value);

	return r.code ? sbopts.errorText(r.code) : true;
}

/*
 * A good line pasted: its values into the other fields' widgets, which the user sees and may still
 * change before saving; Save then stages them as if typed.  setValue() fires no event (ui.js), so
 * each field is checked again here, after all are set (their verdicts depend on each other).
 */
function fillFromJoin(ev, section_id, value) {
	var r = (value != null && value !== '') ? joinline.decode(value) : {};

	if (!r.fields)
		return;

	var values = joinValues(r.fields, section_id), names = Object.keys(values), i, elem;

	for (i = 0; i < names.length; i++) {
		elem = this.section.getUIElement(section_id, names[i]);
		if (elem)
			elem.setValue(values[names[i]]);
	}

	elem = this.section.getUIElement(section_id, 'ip6gw');
	if (elem && elem.setPlaceholder)
		elem.setPlaceholder(gatewayPlaceholder(values.ip6addr));

	for (i = 0; i < names.length; i++) {
		elem = this.section.getUIElement(section_id, names[i]);
		if (elem && elem.triggerValidation)
			elem.triggerValidation();
	}
}

/*
 * On Save, the broker's certificate the line carries goes where updatecert points.  LuCI has no way to
 * write a file but rpcd's file.write (fs.js write(), 0644: a certificate is public), granted by our ACL
 * for /etc/sixbroker/*.pem only.  rpcd does not create the directory: if the write fails the save
 * stops with the words and the command that does the whole join on the router instead.
 */
function writeJoinCert(section_id, value) {
	var r = joinline.decode(value);

	if (!r.fields || !r.fields.cert)
		return null;

	var path = certPath(section_id);

	return fs.write(path, joinline.pem(r.fields.cert)).catch(function(e) {
		throw new Error(sbopts.errorText('JOIN_CERT_WRITE') + ': ' + path + ': ' + (e && e.message || e) + '. ' +
			_('Create the directory on the router (mkdir -p %s) and save again, or run there: sixbroker join LINE').format(CERT_DIR));
	});
}

return network.registerProtocol('sixbroker', {
	getI18n: function() {
		return _('IPv6 tunnel to your own broker');
	},

	getIfname: function() {
		return this._ubus('l3_device') || sbopts.deviceName(this.sid, uci.get('network', this.sid, 'device'));
	},

	/*
	 * network.js Protocol.getDevice() names a virtual protocol's device <proto>-<iface> (and marks that
	 * name a tunnel, for Device.getType()): ours is the handler's name, a tunnel too while it is down
	 */
	getDevice: function() {
		var dev = network.instantiateDevice(this.getIfname(), this);

		dev.getType = function() { return 'tunnel'; };

		return dev;
	},

	/* LuCI before 23.05 asks for getOpkgPackage, later ones for getPackageName */
	getPackageName: function() {
		return 'sixbroker';
	},

	getOpkgPackage: function() {
		return 'sixbroker';
	},

	isFloating: function() {
		return true;
	},

	isVirtual: function() {
		return true;
	},

	getDevices: function() {
		return null;
	},

	containsDevice: function(ifname) {
		return (network.getIfnameOf(ifname) == this.getIfname());
	},

	renderFormOptions: function(s) {
		var o;

		/*
		 * Not a UCI option: nothing is loaded into it and nothing of it is saved (write() only writes the
		 * certificate file, remove() does nothing), so an interface dialog never stages it.
		 */
		o = s.taboption('general', form.Value, '_sixbroker_join', _('Join line'),
			_('Paste the line <code>sixbroker server add</code> printed on your broker (<code>sixbroker join sb1:...</code>): it fills in the fields below, and Save writes the broker\'s certificate to <code>/etc/sixbroker/</code>'));
		o.placeholder = 'sixbroker join sb1:...';
		o.load = function(section_id) { return null; };
		o.validate = validateJoin;
		o.onchange = fillFromJoin;
		o.write = writeJoinCert;
		o.remove = function(section_id) {};

		o = s.taboption('general', form.Value, 'peeraddr', _('Broker address'),
			_('IPv4 address or host name of your broker, the far end of the tunnel (<code>sixbroker server show</code> prints it)'));
		o.rmempty = false;
		o.placeholder = '203.0.113.10';
		o.validate = validator('peeraddr');
		o.onchange = recheck([ 'ipaddr' ]);

		o = s.taboption('general', form.Value, 'ip6addr', _('Local IPv6 address'),
			_('This end of the tunnel with its length, e.g. <code>2001:db8::b/127</code>'));
		o.rmempty = false;
		o.placeholder = '2001:db8::b/127';
		o.validate = validator('ip6addr');
		o.onchange = function(ev, section_id, value) {
			var gw = this.section.getUIElement(section_id, 'ip6gw');

			if (gw && gw.setPlaceholder)
				gw.setPlaceholder(gatewayPlaceholder(value));

			return recheck([ 'ip6gw', 'ip6prefix' ]).call(this, ev, section_id);
		};

		o = s.taboption('general', form.Value, 'ip6gw', _('Broker IPv6 address'),
			_('The far end of the tunnel inside it; leave empty for the other end of a /127 (or /126), or ::1 of a longer prefix'));
		o.validate = validator('ip6gw');
		o.load = function(section_id) {
			this.placeholder = gatewayPlaceholder(uci.get('network', section_id, 'ip6addr'));
			return form.Value.prototype.load.apply(this, [ section_id ]);
		};

		o = s.taboption('general', form.DynamicList, 'ip6prefix', _('Routed IPv6 prefix'),
			_('The prefix the broker routes to you, handed to the LAN (set <em>IPv6 assignment length</em> there)'));
		o.placeholder = '2001:db8:1::/64';
		o.validate = validator('ip6prefix');

		o = s.taboption('general', widgets.NetworkSelect, 'tunlink', _('Tunnel link'),
			_('The interface the tunnel runs over; leave empty to follow the route to the broker'));
		o.exclude = s.section;
		o.nocreate = true;
		o.optional = true;
		o.validate = validator('tunlink');

		/*
		 * Keeping the broker informed of this end's IPv4 address (the updater: src/sixbroker/core/dyndns.py).
		 * The stock 6in4's option names, so a Hurricane Electric tunnel keeps working after a switch.
		 */
		o = s.taboption('general', form.Value, 'tunnelid', _('Tunnel name at the broker'),
			_('With the update key, the router tells the broker its IPv4 address after every setup, on every WAN address change and every few minutes. Hurricane Electric: the tunnel ID.'));
		o.placeholder = _('no updates');
		o.validate = validator('tunnelid');
		o.onchange = recheck([ 'updatekey', 'password' ]);

		o = s.taboption('general', form.Value, 'updatekey', _('Update key'),
			_('The key <code>sixbroker server add</code> printed for this tunnel (Hurricane Electric: the tunnel\'s update key)'));
		o.password = true;
		o.placeholder = _('no updates');
		o.validate = validator('updatekey');
		o.onchange = recheck([ 'tunnelid' ]);

		o = s.taboption('advanced', form.Value, 'username', _('Update user name'),
			_('Leave empty to use the tunnel name (your own broker); Hurricane Electric: your account name'));
		o.placeholder = _('the tunnel name');
		o.validate = validator('username');

		o = s.taboption('advanced', form.Value, 'password', _('Update password'),
			_('Used when no update key is set (the stock 6in4\'s option)'));
		o.password = true;
		o.placeholder = _('the update key');
		o.validate = validator('password');
		o.onchange = recheck([ 'tunnelid' ]);

		o = s.taboption('advanced', form.Value, 'updateurl', _('Update URL'),
			_('Leave empty for your broker\'s own (<code>https://</code><em>broker address</em><code>:8443/nic/update</code>), or Hurricane Electric\'s for a numeric tunnel ID'));
		o.placeholder = 'https://203.0.113.10:8443/nic/update';
		o.validate = validator('updateurl');

		o = s.taboption('advanced', form.Value, 'updatecert', _('Broker certificate'),
			_('File with the broker\'s certificate (PEM), for a broker with a self-signed certificate'));
		o.placeholder = '/etc/sixbroker/broker.pem';
		o.validate = validator('updatecert');

		o = s.taboption('advanced', form.Value, 'updateinterval', _('Update interval'),
			_('Seconds between updates, to catch a new public address of a NAT box in front of the router; 0: only at setup and on WAN address changes'));
		o.placeholder = sbopts.defaults.updateinterval;
		o.validate = validator('updateinterval');

		o = s.taboption('advanced', form.Value, 'ipaddr', _('Local IPv4 address'),
			_('Leave empty to use the address of the tunnel link, or of the route to the broker. Behind NAT this is the private address.'));
		o.validate = validator('ipaddr');
		o.load = function(section_id) {
			return linkFacts(section_id).then(L.bind(function(facts) {
				this.placeholder = facts.ipaddr || _('the tunnel link has no IPv4 address');
				return form.Value.prototype.load.apply(this, [ section_id ]);
			}, this));
		};

		o = s.taboption('advanced', form.Value, 'mtu', _('Use MTU on tunnel interface'),
			_('Leave empty for the tunnel link\'s MTU less the 20-byte IPv4 header'));
		o.validate = validator('mtu');
		o.load = function(section_id) {
			return linkFacts(section_id).then(L.bind(function(facts) {
				this.placeholder = String(sbopts.tunnelMtu(facts.mtu));
				return form.Value.prototype.load.apply(this, [ section_id ]);
			}, this));
		};

		o = s.taboption('advanced', form.Value, 'ttl', _('Use TTL on tunnel interface'));
		o.placeholder = sbopts.defaults.ttl;
		o.validate = validator('ttl');

		o = s.taboption('advanced', form.Value, 'tos', _('Traffic class (TOS)'),
			_('<code>inherit</code> copies it from the inner packet, or a hexadecimal value 00 to ff'));
		o.placeholder = sbopts.defaults.tos;
		o.validate = validator('tos');

		o = s.taboption('advanced', form.Flag, 'sourcerouting', _('Source-restricted default route'),
			_('Route only traffic from the tunnel address and the routed prefixes through the tunnel, as the stock 6in4 does. Off: a plain default route, which the router\'s own traffic can use too.'));
		o.enabled = '1';
		o.disabled = '0';
		o.default = sbopts.defaults.sourcerouting;
		o.load = function(section_id) {
			/* UCI may say yes/on/true like netifd allows: show it as the checkbox it means */
			var v = uci.get('network', section_id, this.option), b = (v != null) ? sbopts.toBool(v) : null;
			return (b === null) ? v : (b ? this.enabled : this.disabled);
		};

		o = s.taboption('advanced', form.Value, 'zone', _('Firewall zone'),
			_('Zone the tunnel device joins when the interface is in none under <em>Firewall Settings</em>'));
		o.placeholder = sbopts.defaults.zone;
		o.validate = validator('zone');

		/*
		 * UCI option "device" names the sit device.  LuCI's interfaces.js has a hidden "Device" field
		 * writing the same option and removes it on save unless another active field aliases it
		 * (form.js AbstractValue.remove): so this field is that alias.
		 */
		o = s.taboption('advanced', form.Value, '_sixbroker_device', _('Tunnel device name'),
			_('Name of the sit device netifd creates'));
		o.ucioption = 'device';
		o.placeholder = sbopts.deviceName(s.section);
		o.validate = validator('device');
	}
});
