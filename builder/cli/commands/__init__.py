"""The commands, one module per group, each loaded only when its command runs (builder.cli.main).

`MODULES` maps a command to the module holding its `cmd_<name>` function.
"""

MODULES = {"build": "build", "parse": "build", "test": "build", "run": "build", "plan": "build", "lock": "build",
           "watch": "watch", "deploy": "deploy", "login": "login", "logout": "login", "inspect": "info",
           "history": "info", "init": "init", "verify": "verify", "sbom": "release", "provenance": "release",
           "promote": "promote", "cache": "cache"}
