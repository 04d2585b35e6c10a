"""The commands: each turns parsed arguments into a call of the stage that does the work, and prints.

Imported by `builder.cli.main` only when a command runs (a no-op build is answered before).
"""

from __future__ import annotations

import getpass
import json
import sys

from builder.cli.junit import write_junit
from builder.cli.output import human_size, print_build, print_dag_run, print_inspect, print_plan, print_validation
from builder.cli.parser import build_args, validation_skipped
from builder.common.errors import InputError
from builder.common.progress import Progress
from builder.deploy import records as deploy_record
from builder.deploy.deploy import DeployOptions, deploy
from builder.engine.build import BuildOptions, build, parse_dags, plan_only, run_dag, run_tests, write_lock
from builder.oci.inspect import inspect_image
from builder.project.init import init_project
from builder.project.manifest import BaseSource
from builder.registry import docker_config
from builder.registry.client import RegistryClient
from builder.registry.docker_config import Credential
from builder.registry.reference import normalise_registry
from builder.watch import WatchOptions, watch

EXIT_OK, EXIT_FAILED = 0, 1


def _options(args):
    skipped = validation_skipped(args)
    return BuildOptions(
        project=args.project,
        oci_dir=getattr(args, "oci", None),
        archive=getattr(args, "archive", None),
        locked=getattr(args, "locked", False),
        upgrade=True if getattr(args, "upgrade", False) else frozenset(getattr(args, "upgrade_package", []) or []) or False,
        base=BaseSource.parse(args.base) if args.base else None,
        validate=skipped is None,
        validation_skipped=skipped,
        force=getattr(args, "force", False),
        progress=Progress(None if not args.json else False),
        backend=getattr(args, "backend", None),
        build_args=build_args(getattr(args, "build_arg", [])),
        secrets=tuple(getattr(args, "secret", [])),
        sandbox=getattr(args, "sandbox", None),
        env_file=getattr(args, "env_file", None),
    )


def cmd_build(args) -> int:
    options = _options(args)
    options.scanned, options.started_ns = args.scanned, args.started_ns  # from the stamp check (cli.main)
    _print_result(build(options).to_json(), args.json, planned=False)
    return EXIT_OK


def cmd_parse(args) -> int:
    report = parse_dags(_options(args))
    if args.junit:

        write_junit(report, args.junit)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:

        print_validation(report.to_json())
    return EXIT_FAILED if report.failed else EXIT_OK


def cmd_watch(args) -> int:
    return watch(args.project, WatchOptions(build_options=lambda: _options(args), load=args.load,
                                            deploy_target=args.deploy, json_lines=args.json))


def cmd_test(args) -> int:
    args.json = False
    return run_tests(_options(args), args.passthrough)


def cmd_run(args) -> int:
    try:
        conf = json.loads(args.conf)
    except ValueError as exc:
        raise InputError(f"--conf is not JSON: {exc}") from None
    if not isinstance(conf, dict):
        raise InputError("--conf must be a JSON object, e.g. '{\"key\": \"value\"}'")
    result = run_dag(_options(args), args.dag_id, conf, network=args.network == "host", timeout_s=args.timeout)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:

        print_dag_run(result.to_json())
    return EXIT_OK if result.succeeded else EXIT_FAILED


def cmd_plan(args) -> int:
    _print_result(plan_only(_options(args)).to_json(), args.json, planned=True)
    return EXIT_OK


def _print_result(result: dict, as_json: bool, planned: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
        return
    (print_plan if planned else print_build)(result)


def cmd_lock(args) -> int:
    lock, path, changed = write_lock(_options(args))
    if args.json:
        print(lock.to_bytes().decode())
    else:
        print(f"{path}: {'updated' if changed else 'unchanged'} (base {lock.base.source} at {lock.base.digest})")
    return EXIT_OK


def cmd_inspect(args) -> int:
    info = inspect_image(args.image)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print_inspect(info)
    return EXIT_OK


def cmd_deploy(args) -> int:
    result = deploy(DeployOptions(
        build=_options(args), target=args.target, to=args.to, insecure=args.insecure, pytest=args.pytest,
        dags_only=args.dags, description=args.description, ca_bundle=args.ca_bundle))
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return EXIT_OK

    for warning in result.warnings:
        print(f"airbuild: warning: {warning}", file=sys.stderr)
    if result.validation_skipped:
        print(f"DAGs not validated: parse skipped ({result.validation_skipped})")
    print(f"deployed to {result.target} in {result.duration_s:.2f}s: {result.blobs_uploaded} blob(s) uploaded "
          f"({human_size(result.bytes_uploaded)}), {result.blobs_mounted} mounted, {result.blobs_skipped} already "
          f"there; tags {', '.join(result.tags)}")
    print(result.reference)
    return EXIT_OK


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


def cmd_history(args) -> int:
    records = deploy_record.read(args.project.resolve(), args.target)
    if args.limit:
        records = records[-args.limit:]
    if args.json:
        print(json.dumps(records, indent=2))
        return EXIT_OK
    if not records:
        print("no deploys recorded")
    for r in records:
        description = (r.get("description") or "").splitlines()[0:1]
        print(f"{r['time']}  {r['target']:<12} {r['reference']}  {r['tag']}  "
              f"{(r.get('git_commit') or '-')[:12]:<12} {human_size(r.get('bytes_uploaded')):>9}  "
              f"{description[0] if description else ''}")
    return EXIT_OK


def cmd_init(args) -> int:
    made = init_project(args.directory, args.name)
    if args.json:
        print(json.dumps(made.to_json(), indent=2))
        return EXIT_OK
    print(f"created the Airflow project {made.name} in {made.project}:")
    for path in made.files:
        print(f"  {path}")
    print(f"next: cd {made.project} && airbuild build   (then: airbuild parse, airbuild test, "
          "airbuild deploy --to HOST/REPO)")
    return EXIT_OK


COMMANDS = {"init": cmd_init, "build": cmd_build, "parse": cmd_parse, "test": cmd_test, "run": cmd_run, "watch": cmd_watch, "plan": cmd_plan, "lock": cmd_lock,
            "inspect": cmd_inspect, "deploy": cmd_deploy, "login": cmd_login, "logout": cmd_logout,
            "history": cmd_history}
