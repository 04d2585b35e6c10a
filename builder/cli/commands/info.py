"""`airbuild inspect` and `history`: what was built and what was deployed."""

from __future__ import annotations

import json

from builder.cli.commands.options import EXIT_OK
from builder.cli.output import human_size, print_inspect, show
from builder.deploy import records as deploy_record
from builder.oci.inspect import inspect_image


def cmd_inspect(args) -> int:
    info = inspect_image(args.image)
    show(info, args.json, print_inspect)
    return EXIT_OK


def cmd_history(args) -> int:
    if args.verify:
        # The registry client and the engine: loaded only when the tags are looked up.
        from builder.cli.commands.verify import cmd_history_verify

        return cmd_history_verify(args)
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
        print(f"{r['time']}  {r['target']:<12} {r.get('reference') or '-'}  {r.get('tag') or '-'}  "
              f"{(r.get('git_commit') or '-')[:12]:<12} {human_size(r.get('bytes_uploaded')):>9}  "
              f"{description[0] if description else ''}")
        astro = r.get("astro")
        if astro:
            print(f"{'':22}astro {astro['deploy_type']} deploy {astro['deploy_id']}  image tag "
                  f"{astro.get('image_tag') or '-'}  DAG bundle {astro.get('dag_tarball_version') or '-'}")
    return EXIT_OK
