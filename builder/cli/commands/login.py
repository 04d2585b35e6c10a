"""`airbuild login` and `logout`: credentials where Docker keeps them."""

from __future__ import annotations

import getpass
import sys

from builder.cli.commands.options import EXIT_OK
from builder.common.errors import InputError
from builder.registry import docker_config
from builder.registry.client import RegistryClient
from builder.registry.docker_config import Credential
from builder.registry.reference import normalise_registry


def cmd_login(args) -> int:

    registry = normalise_registry(args.registry)
    username = args.username
    if args.password_stdin:
        if not username:
            raise InputError("--password-stdin needs --username")
        password = sys.stdin.read().rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            raise InputError("no terminal to ask for the password on: use --username and --password-stdin")
        username = username or input("Username: ").strip()
        password = getpass.getpass("Password: ")
    if not username or not password:
        raise InputError("a user name and a password are both needed")
    credential = Credential(username, password, source=f"the credentials given for {username}")
    with RegistryClient(registry, insecure=args.insecure, ca_bundle=args.ca_bundle, credential=credential) as client:
        how = client.check_credentials()
    where = docker_config.store(registry, username, password)
    note = " (the registry asks for no authentication)" if how.startswith("the registry") else ""
    print(f"login succeeded for {username} at {registry}{note}; credentials saved in {where}")
    return EXIT_OK


def cmd_logout(args) -> int:
    registry = normalise_registry(args.registry)
    found = docker_config.erase(registry)
    print(f"removed the credentials for {registry}" if found else f"no credentials were saved for {registry}")
    return EXIT_OK
