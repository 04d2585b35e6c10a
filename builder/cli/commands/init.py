"""`airbuild init`: a new project."""

from __future__ import annotations

import json

from builder.cli.commands.options import EXIT_OK
from builder.project.init import init_project


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
