"""`airbuild login` and `logout`: credentials where Docker keeps them, for a registry or for Astro's API."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

from builder.cli.commands.options import EXIT_OK
from builder.common.errors import InputError
from builder.deploy.astro import settings as astro_settings
from builder.deploy.astro.api import AstroAPI
from builder.project.discover import find_project
from builder.project.manifest import AstroTarget, load_manifest
from builder.registry import docker_config
from builder.registry.client import RegistryClient
from builder.registry.docker_config import Credential
from builder.registry.reference import normalise_registry, parse_repository


def cmd_login(args) -> int:
    registry, insecure = args.registry, args.insecure
    if args.astro:
        return _login_astro(astro_settings.astro_target(args.astro), args)
    if args.target:
        target = _project_target(args.target)
        if target.astro is not None:
            return _login_astro(target.astro, args)
        registry, insecure = parse_repository(target.registry).registry, target.insecure or insecure
    if not registry:
        raise InputError("name the registry (host[:port]), or give --astro DEPLOYMENT_ID or --target NAME")
    registry = normalise_registry(registry)
    username = args.username
    if args.password_stdin and not username:
        raise InputError("--password-stdin needs --username")
    if not args.password_stdin and not username:
        _need_terminal()
        username = input("Username: ").strip()
    password = _secret(args, "Password: ")
    if not username or not password:
        raise InputError("a user name and a password are both needed")
    credential = Credential(username, password, source=f"the credentials given for {username}")
    with RegistryClient(registry, insecure=insecure, ca_bundle=args.ca_bundle, credential=credential) as client:
        how = client.check_credentials()
    where = docker_config.store(registry, username, password)
    note = " (the registry asks for no authentication)" if how.startswith("the registry") else ""
    print(f"login succeeded for {username} at {registry}{note}; credentials saved in {where}")
    return EXIT_OK


def _login_astro(target: AstroTarget, args) -> int:
    """An Astro API token, proven by reading the Deployment with it, saved under the API's host."""
    token = _secret(args, "Astro API token: ")
    if not token:
        raise InputError("an Astro API token is needed")
    settings = astro_settings.settings_for(target, (token, "the token given"))
    with AstroAPI(settings, args.ca_bundle) as api:
        deployment = api.deployment()
    host = astro_settings.api_host(settings.api_url)
    where = docker_config.store(host, astro_settings.LOGIN_USER, token)
    print(f"login succeeded: the token reads Deployment {deployment.name or deployment.id} "
          f"({settings.deployment}); saved for {host} in {where}")
    return EXIT_OK


def _project_target(name: str):
    manifest, path = load_manifest(find_project(Path.cwd()))
    if name not in manifest.targets:
        raise InputError(f"no target {name!r} in {path or 'astro.yaml'}; targets: "
                         f"{', '.join(sorted(manifest.targets)) or 'none'}")
    return manifest.targets[name]


def _need_terminal() -> None:
    if not sys.stdin.isatty():
        raise InputError("no terminal to ask for the password on: use --password-stdin (and --username for a "
                         "registry)")


def _secret(args, prompt: str) -> str:
    if args.password_stdin:
        return sys.stdin.read().rstrip("\r\n")
    _need_terminal()
    return getpass.getpass(prompt)


def cmd_logout(args) -> int:
    if args.astro:
        registry = astro_settings.api_host(astro_settings.api_url())
        what = "the Astro API token"
    elif args.registry:
        registry = normalise_registry(args.registry)
        what = "the credentials"
    else:
        raise InputError("name the registry (host[:port]), or give --astro")
    found = docker_config.erase(registry)
    print(f"removed {what} for {registry}" if found else f"no credentials were saved for {registry}")
    return EXIT_OK
