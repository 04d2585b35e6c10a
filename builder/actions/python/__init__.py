"""The `python-requirements` action: requirements.txt resolved for the image's Python, installed as
pip installs it, one layer keyed by the lock.

Public: `action` (python_action), `target` (the base's Python: version, tags, distributions),
`resolve` (uv resolution, PinnedWheel), `install` (wheels fetched and installed), `install_order`
(pip's order).
"""
