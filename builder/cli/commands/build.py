"""Commands that build (all or the environment) and report: build, parse, test, run, plan, lock."""

from __future__ import annotations

import json

from builder.cli.commands.options import EXIT_FAILED, EXIT_OK, build_options
from builder.cli.junit import write_junit
from builder.cli.output import print_build, print_dag_run, print_plan, print_validation, show
from builder.common.errors import InputError
from builder.engine.build import build, parse_dags, plan_only, run_dag, run_tests, write_lock


def cmd_build(args) -> int:
    options = build_options(args)
    options.scanned, options.started_ns = args.scanned, args.started_ns  # from the stamp check (cli.main)
    show(build(options).to_json(), args.json, print_build)
    return EXIT_OK


def cmd_parse(args) -> int:
    report = parse_dags(build_options(args))
    if args.junit:
        write_junit(report, args.junit)
    show(report.to_json(), args.json, print_validation)
    return EXIT_FAILED if report.failed else EXIT_OK


def cmd_test(args) -> int:
    args.json = False
    return run_tests(build_options(args), args.passthrough)


def cmd_run(args) -> int:
    try:
        conf = json.loads(args.conf)
    except ValueError as exc:
        raise InputError(f"--conf is not JSON: {exc}") from None
    if not isinstance(conf, dict):
        raise InputError("--conf must be a JSON object, e.g. '{\"key\": \"value\"}'")
    result = run_dag(build_options(args), args.dag_id, conf, network=args.network == "host", timeout_s=args.timeout)
    show(result.to_json(), args.json, print_dag_run)
    return EXIT_OK if result.succeeded else EXIT_FAILED


def cmd_plan(args) -> int:
    show(plan_only(build_options(args)).to_json(), args.json, print_plan)
    return EXIT_OK


def cmd_lock(args) -> int:
    lock, path, changed = write_lock(build_options(args))
    if args.json:
        print(lock.to_bytes().decode())
    else:
        print(f"{path}: {'updated' if changed else 'unchanged'} (base {lock.base.source} at {lock.base.digest})")
    return EXIT_OK
