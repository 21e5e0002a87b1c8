"""The OpenWrt router end: the netifd protocol handler and what LuCI, rpcd and hotplug call."""
