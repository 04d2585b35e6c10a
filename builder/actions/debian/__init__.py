"""The `system-packages` action: packages.txt -> a layer of Debian packages, as apt installs them.

Public: `action` (system_packages_action), `package_list` (parse_package_list), `layer`
(packages_layer: resolution against the base's dpkg status and apt sources, locked, installed).
"""
