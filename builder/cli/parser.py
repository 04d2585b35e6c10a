"""The command line's grammar: every command, its arguments and its --help."""

from __future__ import annotations

import argparse
import os
import textwrap
from pathlib import Path

from builder import __version__
from builder.project.skip_parse import reason as skip_parse_reason

DESCRIPTION = """\
Build Apache Airflow projects (Astro layout: Dockerfile, packages.txt, requirements.txt,
dags/, include/, plugins/) into reproducible, content-addressed OCI images, without a
Docker daemon. Each rule in astro.yaml (or the default set) becomes one layer keyed by
the hash of its inputs: an unchanged layer is never rebuilt.
"""

EPILOG = """\
examples:
  airbuild init my-project             a new project that builds, parses and tests as written
  airbuild build                       build the project this directory is in (from dags/ too)
  airbuild build --base rootfs:base.tar --archive image.tar
  airbuild plan --json                 which layers would be rebuilt, and why
  airbuild inspect .airbuild/image     layers, sizes and config of a built image
  airbuild deploy --target prod        validate, build, push what the registry lacks, tag, record
  airbuild deploy --astro DEPLOYMENT_ID   deploy to Astro (ASTRO_API_TOKEN, ASTRO_ORGANIZATION_ID)
  airbuild deploy --astro DEPLOYMENT_ID --dags   only the DAGs: a reproducible bundle, no image
  airbuild login registry.example.com  save credentials where Docker keeps them
  airbuild verify HOST/REPO:TAG        rebuild the commit as astro.lock pins it; is it the image shipped?
  airbuild history --verify            has any tag recorded by a deploy moved since?

exit codes: 0 ok, 1 build failed, 2 bad input (manifest, Dockerfile, project, lock), 70 internal error
  (a bug: the traceback is written to a log file under the cache directory, whose path is printed), 130 interrupted
environment: AIRBUILD_CACHE_DIR (the shared store), SOURCE_DATE_EPOCH (timestamps, default 0),
  AIRBUILD_REGISTRY_USERNAME/_PASSWORD or _TOKEN (CI credentials for the deploy target, or for
  AIRBUILD_REGISTRY_HOST), AIRBUILD_CA_BUNDLE (extra trusted CAs), DOCKER_CONFIG (where config.json is),
  ASTRO_API_TOKEN, ASTRO_ORGANIZATION_ID, ASTRO_API_URL (Astro deploys)
"""


BASE_HELP = ("override the base image (astro.yaml's `base`, the Dockerfile's FROM): image:REF, oci:DIR[:TAG|@DIGEST], "
             "archive:FILE, rootfs:FILE or debian:SUITE[:PACKAGE,...] (built from Debian's packages, e.g. "
             "debian:bookworm:python3,ca-certificates)")


PROJECT_HELP = ("the Airflow project directory (default: the nearest directory from here up with an astro.yaml, or "
                "with a Dockerfile and dags/, so commands work from dags/ or any directory below the project)")


def _project_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("project", nargs="?", type=Path, help=PROJECT_HELP)


def _project_args(parser: argparse.ArgumentParser) -> None:
    _project_arg(parser)
    parser.add_argument("--base", metavar="KIND:LOCATION", help=BASE_HELP)
    parser.add_argument("--locked", action="store_true",
                        help="build exactly what astro.lock pins; fail (exit 2) if the inputs no longer match it")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of a table")
    _engine_args(parser)


def _engine_args(parser: argparse.ArgumentParser, shared_cache: bool = True) -> None:
    parser.add_argument("--backend", choices=("auto", "native", "buildkit"),
                        help="how the Dockerfile's instructions are built (default: astro.yaml's `backend`, else "
                             "auto): auto runs RUN in BuildKit and everything else natively; buildkit also its "
                             "COPY; native refuses RUN")
    parser.add_argument("--build-arg", metavar="NAME[=VALUE]", action="append", default=[],
                        help="a value for the Dockerfile's ARG NAME (repeatable; NAME alone takes it from the "
                             "environment), over astro.yaml's build_args")
    parser.add_argument("--secret", metavar="id=ID,src=FILE", action="append", default=[],
                        help="a build secret for RUN --mount=type=secret,id=ID: a file (src=) or an environment "
                             "variable (env=); repeatable; never stored in a layer or a key")
    if not shared_cache:
        return
    parser.add_argument("--cache-repo", metavar="HOST[:PORT]/REPO",
                        help="a shared build cache in a registry repository: layers found there are not built, "
                             "layers built here are written there (default: $AIRBUILD_CACHE_REPO, else astro.yaml's "
                             "`cache`); the registry's credentials as for deploys")
    parser.add_argument("--cache-required", action="store_true",
                        help="fail when the shared cache cannot be used (default: a warning, and the build goes on)")


def build_args(values: list[str]) -> dict[str, str]:
    """--build-arg values, as Docker reads them: NAME=VALUE, or NAME taking the environment's value if set."""
    out: dict[str, str] = {}
    for text in values:
        name, sep, value = text.partition("=")
        if sep:
            out[name] = value
        elif name in os.environ:
            out[name] = os.environ[name]
    return out


def _sandbox_args(parser: argparse.ArgumentParser, workers: bool = True) -> None:
    parser.add_argument("--sandbox", choices=("auto", "bwrap", "docker", "none"),
                        help="where DAG files are imported (default: astro.yaml's validation.sandbox, else auto): "
                             "auto uses bubblewrap, else `docker run --network none --read-only`, else stops "
                             "with an error")
    parser.add_argument("--no-sandbox", dest="sandbox", action="store_const", const="none",
                        help="import DAG files unconfined, with your rights on this machine (same as --sandbox none)")
    if not workers:
        return
    parser.add_argument("--workers", type=_workers, metavar="N",
                        help="sandboxes importing DAG files at once, each with its own process limits (default: "
                             "astro.yaml's validation.workers, else one per CPU core; 1: one after another)")


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 256:
        raise argparse.ArgumentTypeError(f"--workers takes a number from 1 to 256, not {text!r}")
    return value


RUN_EXAMPLES = """\
examples:
  airbuild run example_etl
  airbuild run example_etl --conf '{"day": "2024-01-01"}'
  airbuild run example_etl --network none --json
"""


def _env_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-e", "--env", metavar="FILE", type=Path, dest="env_file",
                        help="variables for the DAGs' environment, in docker's env-file syntax (default: the "
                             "project's .env, as `astro dev parse` reads it); never in a layer, masked in output")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airbuild", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"airbuild {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    build = commands.add_parser("build", help="build the project into an OCI image",
                                description="Build the project into an OCI image layout (default "
                                            ".airbuild/image/) and optionally a docker-loadable tarball.")
    _project_args(build)
    build.add_argument("--oci", metavar="DIR", type=Path, help="write the OCI image layout here")
    build.add_argument("--archive", metavar="FILE", type=Path,
                       help="also write one tarball that `docker load` and OCI tools (skopeo, umoci) accept")
    build.add_argument("--no-validate", action="store_true",
                       help="do not import the DAGs in the sandbox first (also: ASTRONOMER_SKIP_PARSE=true, or "
                            "skip_parse: true in .astro/config.yaml, as the Astro CLI reads them)")
    build.add_argument("--force", action="store_true", help="write the image even if DAGs fail to import")
    _sandbox_args(build)

    parse = commands.add_parser(
        "parse", help="import every DAG file in a sandbox against the image's Python environment",
        description="Build the image's environment (cached), then import each DAG file in a sandbox "
                    "(bubblewrap, else Docker) "
                    "(read-only root, no network, limits per file), only the files that changed since the last "
                    "run. Reports import errors, cycles, duplicate task ids and duplicate dag_ids across files.")
    _project_args(parse)
    parse.add_argument("--junit", metavar="FILE", type=Path, help="also write a JUnit XML report for CI")
    _sandbox_args(parse)
    _env_arg(parse)

    watch = commands.add_parser(
        "watch", help="rebuild and validate on every save; optionally load or deploy each good image",
        description="Watch the project and build on every change: only changed files are re-read, only "
                    "changed layers rebuilt, only changed DAG files imported (by a sandboxed Airflow kept "
                    "running). Bursts of writes make one build; changes during a build make the next one. "
                    "A failing build keeps the last good image. Ctrl-C stops cleanly.")
    _project_arg(watch)
    watch.add_argument("--base", metavar="KIND:LOCATION", help=BASE_HELP)
    shipping = watch.add_mutually_exclusive_group()
    shipping.add_argument("--load", action="store_true", help="docker load each new image")
    shipping.add_argument("--deploy", metavar="TARGET", help="push each new image to this target of astro.yaml")
    watch.add_argument("--no-validate", action="store_true", help="do not import the DAGs in the sandbox")
    _sandbox_args(watch)
    _env_arg(watch)
    watch.add_argument("--json", action="store_true",
                       help='one JSON object per line: {"event": "build", "manifest_digest", "latency_s", '
                            '"changed", "rebuilt_layers", "errors", ...}')

    test = commands.add_parser(
        "test", help="run the project's tests/ with pytest in the DAG sandbox",
        description="Run pytest (installed in the image: add it to requirements.txt) on the project's tests/, "
                    "against the image's environment, in the same sandbox as DAG parsing. Arguments after -- go "
                    "to pytest (airbuild test -- -k dags -x). Exits with pytest's code.")
    _project_arg(test)
    test.add_argument("--base", metavar="KIND:LOCATION", help=BASE_HELP)
    _engine_args(test)
    _sandbox_args(test, workers=False)
    _env_arg(test)

    run = commands.add_parser(
        "run", help="run one DAG end to end in the image's environment (like `astro run`, without Docker)",
        description="Build the image's environment (cached), then run DAG_ID once, every task in order as "
                    "`airflow dags test` does, in the sandbox: the project's dags/, plugins/ and include/ "
                    "read-only, a private AIRFLOW_HOME with a fresh SQLite database, connections and "
                    "variables from your environment, the project's .env and airflow_settings.yaml. The "
                    "network is on (a run talks to its services) unless --network none. Prints each task's "
                    "state and the end of the log of those that failed; exits 0 only if the run succeeded.",
        epilog=RUN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("dag_id", help="the DAG to run")
    _project_arg(run)
    run.add_argument("--conf", metavar="JSON", default="{}", help="the run's configuration (dag_run.conf), a JSON "
                                                                  "object")
    run.add_argument("--network", choices=("host", "none"), default="host",
                     help="host (default): the run reaches what this machine reaches; none: no network")
    run.add_argument("--timeout", type=float, default=3600, metavar="SECONDS",
                     help="stop the run after this long (default 3600)")
    run.add_argument("--base", metavar="KIND:LOCATION", help=BASE_HELP)
    run.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    _engine_args(run)
    _sandbox_args(run, workers=False)
    _env_arg(run)

    plan = commands.add_parser("plan", help="show the layers a build would produce, and why each would be rebuilt",
                               description="Compute every layer's key and compare with the store, without "
                                           "building anything.")
    _project_args(plan)

    lock = commands.add_parser("lock", help="write astro.lock from the current inputs",
                               description="Resolve what would float (the base image's digest) and pin it in "
                                           "astro.lock. Commit the file; build with --locked in CI.")
    _project_arg(lock)
    lock.add_argument("--base", metavar="KIND:LOCATION", help=BASE_HELP)
    lock.add_argument("--upgrade", action="store_true", help="re-resolve every pinned package to the newest allowed")
    lock.add_argument("--upgrade-package", metavar="NAME", action="append", default=[],
                      help="re-resolve only this package (repeatable); others stay pinned where they can")
    lock.add_argument("--json", action="store_true", help="print the lock as JSON")

    inspect = commands.add_parser("inspect", help="show an image's layers, sizes, digests and config",
                                  description="Read an OCI image layout directory or an image tarball.")
    inspect.add_argument("image", nargs="?", type=Path,
                         help="OCI layout directory or tarball (default: the project's .airbuild/image, the project "
                              "found as for build)")
    inspect.add_argument("--json", action="store_true", help="print JSON")
    init = commands.add_parser(
        "init", help="create an Astro-layout project that builds, parses and tests as written",
        description="Write a new project into DIR (default: here; created if missing): Dockerfile, astro.yaml with a "
                    "Debian base (no Docker or registry needed), requirements.txt (Airflow, pytest), packages.txt, "
                    "an example DAG, tests/dags/, .dockerignore with Astro's defaults, .gitignore, .env, "
                    "airflow_settings.yaml, .astro/config.yaml and the Astro CLI's DAG integrity test. Existing "
                    "files are never overwritten: if any is there, nothing is written (exit 2).")
    init.add_argument("directory", nargs="?", default=Path("."), type=Path, help="where (default: here)")
    init.add_argument("--name", help="the image name (astro.yaml `name`; default: the directory's name)")
    init.add_argument("--json", action="store_true", help="print the project and the files written as JSON")
    _registry_parsers(commands)
    return parser


DEPLOY_DESCRIPTION = """\
Check the DAG files compile (and with --pytest run tests/), build (importing the DAGs in the
sandbox), ship, print what was shipped and append a record to .airbuild/deploys.jsonl. A dirty git
tree, DAG errors and failing tests refuse the deploy (exit 2) unless --force.

To a registry: push only the blobs it lacks, tag with the reproducible deploy-<digest> tag and the
target's tags.

To an Astro Deployment (--astro ID, or a target `astro: {deployment: ID}`), through Astro's Deploy
API as `astro deploy` does, with the token from ASTRO_API_TOKEN (or `airbuild login --astro`):
  IMAGE_AND_DAG  the Deployment has DAG deploys enabled: the image without dags/, and a
                 reproducible DAG bundle (.tar.gz of dags/)
  IMAGE_ONLY     it has not: the image with its DAGs
  DAG_ONLY       --dags: the DAG bundle alone, validated against the Deployment's image; no image
Nothing is created on Astro before the DAGs pass; the deploy is finalized only once the image is
pushed and the bundle uploaded.
"""

DEPLOY_EXAMPLES = """\
examples:
  airbuild deploy --target prod                 a registry target, or an Astro one (astro: {deployment: ID})
  airbuild deploy --to registry.example.com/team/airflow
  ASTRO_API_TOKEN=... ASTRO_ORGANIZATION_ID=... airbuild deploy --astro DEPLOYMENT_ID
  airbuild deploy --astro DEPLOYMENT_ID --dags  DAG_ONLY: the DAG bundle, validated, no image
  airbuild deploy --json                        the result with, for Astro, `astro`: deploy_id, deploy_type,
                                                image_tag, image_digest, dag_tarball_version, bundle_sha256
"""


def _registry_parsers(commands) -> None:
    deploy = commands.add_parser(
        "deploy", help="validate, build and ship the image to a registry or an Astro Deployment",
        description=DEPLOY_DESCRIPTION,
        epilog=DEPLOY_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _project_args(deploy)
    where = deploy.add_mutually_exclusive_group()
    where.add_argument("--target", metavar="NAME", help="a target from astro.yaml's `targets` (default: the only one)")
    where.add_argument("--to", metavar="HOST/REPO", help="push here instead of a named target")
    where.add_argument("--astro", metavar="DEPLOYMENT_ID",
                       help="deploy to this Astro Deployment through Astro's Deploy API (organization from "
                            "ASTRO_ORGANIZATION_ID, token from ASTRO_API_TOKEN, API from ASTRO_API_URL)")
    deploy.add_argument("--insecure", action="store_true",
                        help="with --to: allow plain HTTP and unverified TLS (loopback registries always may)")
    deploy.add_argument("--force", action="store_true",
                        help="deploy despite a dirty git tree, DAG errors or failing tests")
    deploy.add_argument("--pytest", action="store_true", help="run the project's tests/ with pytest first")
    deploy.add_argument("--no-validate", action="store_true",
                        help="do not import the DAGs in the sandbox (as ASTRONOMER_SKIP_PARSE=true or skip_parse: "
                             "true in .astro/config.yaml, which deploy and build also honour)")
    _sandbox_args(deploy)
    deploy.add_argument("--dags", action="store_true",
                        help="DAG-only deploy: to a registry, replace the DAG layer of the target's current image "
                             "(its first tag, else the last deploy recorded here) and push that layer, config and "
                             "manifest; to Astro, a DAG_ONLY deploy of the DAG bundle alone (no image). The DAGs "
                             "are validated against the deployed image's environment")
    deploy.add_argument("--description", metavar="TEXT", help="recorded with the deploy (default: the last commit "
                                                              "message)")
    deploy.add_argument("--ca-bundle", metavar="FILE", type=Path, help="also trust these CA certificates (PEM)")
    deploy.add_argument("--no-attest", dest="attest", action="store_false",
                        help="push the image alone: no SBOMs or provenance attached as referrers (as a target's "
                             "`attest: false`)")
    deploy.add_argument("--sign-key", metavar="KEY.pem", type=Path,
                        help="sign the attached provenance: a DSSE envelope signed with this ECDSA P-256 key")
    _release_parsers(commands)

    login = commands.add_parser("login", help="save credentials for a registry or Astro (checked first)",
                                description="Ask for a password (or read it with --password-stdin), check the "
                                            "credentials against the registry, and store them where Docker does: "
                                            "the configured credential helper, else ~/.docker/config.json (0600). "
                                            "With --astro DEPLOYMENT_ID (or --target NAME of an Astro target): "
                                            "ask for an Astro API token, check it by reading the Deployment, and "
                                            "store it the same way under the API's host (ASTRO_API_TOKEN, when "
                                            "set, wins over it).")
    login.add_argument("registry", nargs="?", help="host[:port]")
    astro = login.add_mutually_exclusive_group()
    astro.add_argument("--astro", metavar="DEPLOYMENT_ID",
                       help="save an Astro API token, checked against this Deployment (organization from "
                            "ASTRO_ORGANIZATION_ID)")
    astro.add_argument("--target", metavar="NAME",
                       help="log in for this target of the project's astro.yaml (from here up): its registry, or "
                            "for an `astro` target its Deployment")
    login.add_argument("-u", "--username", help="user name (asked for when not given)")
    login.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    login.add_argument("--insecure", action="store_true", help="allow plain HTTP and unverified TLS")
    login.add_argument("--ca-bundle", metavar="FILE", type=Path, help="also trust these CA certificates (PEM)")

    logout = commands.add_parser("logout", help="remove saved credentials for a registry, or the Astro token")
    logout.add_argument("registry", nargs="?", help="host[:port]")
    logout.add_argument("--astro", action="store_true", help="remove the Astro API token `login --astro` saved")

    _cache_commands(commands)

    history = commands.add_parser(
        "history", help="list the deploys recorded in .airbuild/deploys.jsonl; --verify: has a tag moved since?",
        description="List the deploys recorded in .airbuild/deploys.jsonl. With --verify, look up every tag they "
                    "pushed in its registry and check it still points at the digest recorded for it (the last "
                    "deploy that pushed it): a moved or deleted tag exits 1, naming the tag, the recorded digest "
                    "and the current one.")
    _project_arg(history)
    history.add_argument("--target", metavar="NAME", help="only this target's deploys")
    history.add_argument("-n", "--limit", type=int, default=20,
                         help="show the last N (default 20; 0: all); --verify checks every recorded tag")
    history.add_argument("--verify", action="store_true",
                         help="check every recorded tag still points at its recorded digest (exit 1 if one moved or "
                              "was deleted, or its registry cannot be asked)")
    history.add_argument("--ca-bundle", metavar="FILE", type=Path, help="also trust these CA certificates (PEM)")
    history.add_argument("--json", action="store_true",
                         help="print a JSON list (with --verify: an object with `tags`, each with `reference`, "
                              "`recorded`, `current`, `status`)")
    _verify_parser(commands)


VERIFY_DESCRIPTION = """\
Rebuild the project's commit exactly as astro.lock pins it (--locked), in a fresh store of its own
and with no shared cache, and compare the result with REF, the image you shipped. Identical
manifests: exit 0, "verified" and the digest. Otherwise exit 1, naming the first layer that differs
by the rule that made it and, inside it, up to 50 paths and what differs: content, mode, owner,
link target, or present on one side only; or, with the same layers, the config fields that differ.

The commit is checked out with git (ignored and untracked files, and .airbuild/, take no part); a
dirty tree is refused (exit 2) unless --force, which verifies the working tree as it is. Pinned
inputs already on this machine (the lock's .debs and wheels, a digest-pinned base's blobs) are
reused once their sha256 is checked; every layer of the project is built again. DAGs are not
imported. Build with the SOURCE_DATE_EPOCH the image was built with.
"""

VERIFY_EXAMPLES = """\
examples:
  airbuild verify registry.example.com/team/airflow:prod
  airbuild verify registry.example.com/team/airflow@sha256:4f2a...
  airbuild verify .airbuild/image                      an OCI layout (DIR, DIR:TAG, DIR@sha256:...)
  airbuild verify image.tar --json                     an image tarball; the facts as JSON
"""


def _verify_parser(commands) -> None:
    verify = commands.add_parser(
        "verify", help="rebuild the commit as astro.lock pins it and compare with a shipped image",
        description=VERIFY_DESCRIPTION, epilog=VERIFY_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _project_arg(verify)
    verify.add_argument("reference", metavar="REF",
                        help="the image to compare with: HOST/REPO:TAG or HOST/REPO@sha256:... in a registry, an OCI "
                             "layout directory (oci:DIR[:TAG|@DIGEST]) or an image tarball (archive:FILE)")
    verify.add_argument("--force", action="store_true",
                        help="verify a dirty git tree as it is (uncommitted and untracked files included)")
    verify.add_argument("--key", metavar="PUB.pem", type=Path,
                        help="also check REF's signed provenance (a DSSE envelope attached by `deploy --sign-key`) "
                             "against this ECDSA P-256 public key: exit 1 unless one checks out and names REF's digest")
    verify.add_argument("--base", metavar="KIND:LOCATION", help=BASE_HELP + "; as the image was built with")
    verify.add_argument("--oci", metavar="DIR", type=Path, help="keep the rebuilt image here (an OCI layout)")
    verify.add_argument("--insecure", action="store_true",
                        help="allow plain HTTP and unverified TLS for REF's registry (loopback registries always may)")
    verify.add_argument("--ca-bundle", metavar="FILE", type=Path, help="also trust these CA certificates (PEM)")
    verify.add_argument("--json", action="store_true",
                        help="print one JSON object: verified, reference, reference_digest, rebuilt_digest, source, "
                             "first_difference (index, rule, rebuilt, reference, paths with their changes, "
                             "paths_total), also_differing, config_differences, notes")
    _engine_args(verify, shared_cache=False)


RELEASE_EXAMPLES = """\
examples:
  airbuild sbom > sbom.spdx.json                     SPDX 2.3 of the image this project builds
  airbuild sbom --format cyclonedx -o bom.json       CycloneDX 1.6
  airbuild provenance --sign-key key.pem -o prov.json   SLSA v1 provenance in a signed DSSE envelope
  airbuild promote reg.example.com/staging/app:rc1 --to reg.example.com/prod/app --tag v1.4 \\
      --digest sha256:...                            copy exactly that image (and its referrers), or refuse
"""


def _release_parsers(commands) -> None:
    for name, what in (("sbom", "an SBOM"), ("provenance", "SLSA provenance")):
        parser = commands.add_parser(
            name, help=f"print {what} of the image this project builds" + (
                " (SPDX 2.3 or CycloneDX 1.6 JSON)" if name == "sbom" else " (an in-toto statement)"),
            description=textwrap.fill(
                "Build the project (from the store when unchanged; DAGs are not imported) and write "
                + ("its SBOM from what airbuild resolved and pinned, no scanner: every Debian package (name, "
                   "version, architecture, sha256, purl pkg:deb/debian/...), every Python distribution (purl "
                   "pkg:pypi/..., sha256), the base image (digest) and airbuild itself. The same image gives the "
                   "same bytes (times from SOURCE_DATE_EPOCH, identifiers from the image digest)."
                   if name == "sbom" else
                   "its SLSA v1 provenance as an in-toto Statement v1: subject the image digest; the build "
                   "definition (commit, astro.yaml and Dockerfile digests, the options that shape the image); the "
                   "resolved dependencies (base digest, astro.lock's hash); the run (builder id from "
                   "AIRBUILD_BUILDER_ID, airbuild's version, start and finish). `deploy` attaches the same "
                   "documents to the image as OCI referrers."), 100),
            epilog=RELEASE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
        _project_arg(parser)
        parser.add_argument("--base", metavar="KIND:LOCATION", help=BASE_HELP)
        parser.add_argument("--locked", action="store_true",
                            help="build exactly what astro.lock pins; fail (exit 2) if the inputs no longer match it")
        if name == "sbom":
            parser.add_argument("--format", choices=("spdx", "cyclonedx"), default="spdx",
                                help="spdx (SPDX 2.3 JSON, the default) or cyclonedx (CycloneDX 1.6 JSON)")
        else:
            parser.add_argument("--sign-key", metavar="KEY.pem", type=Path,
                                help="wrap the statement in a DSSE envelope signed with this ECDSA P-256 private "
                                     "key (PEM; make one with `openssl ecparam -name prime256v1 -genkey -noout`)")
        parser.add_argument("-o", "--output", metavar="FILE", type=Path,
                            help="write here (atomically) instead of standard output")

    promote = commands.add_parser(
        "promote", help="copy an image by digest to another repository or registry, with its referrers",
        description=textwrap.fill("Copy the image SRC points at to DEST without rebuilding: every manifest keeps its bytes, so "
                    "the digest is the same. Blobs are mounted when both are on one registry, else streamed "
                    "from one to the other; the image's referrers (SBOMs, provenance) go with it. DEST gets the "
                    "reproducible deploy-<digest> tag and each --tag. Recorded in the project's deploy history "
                    "(.airbuild/deploys.jsonl) when run in a project.", 100),
        epilog=RELEASE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    promote.add_argument("source", metavar="SRC", help="host/repo:tag or host/repo@sha256:... to copy")
    promote.add_argument("--to", metavar="HOST/REPO[:TAG]", required=True, help="where to copy it")
    promote.add_argument("--tag", metavar="TAG", action="append", default=[], help="also tag it so (repeatable)")
    promote.add_argument("--digest", metavar="sha256:...",
                         help="refuse (exit 1) unless SRC still points at this digest")
    promote.add_argument("--project", dest="promote_project", metavar="DIR", type=Path,
                         help="record the promotion in this project's history (default: the project from here up, "
                              "if any)")
    promote.add_argument("--insecure", action="store_true",
                         help="allow plain HTTP and unverified TLS (loopback registries always may)")
    promote.add_argument("--ca-bundle", metavar="FILE", type=Path, help="also trust these CA certificates (PEM)")
    promote.add_argument("--json", action="store_true", help="print the result as JSON")


CACHE_EPILOG = """\
examples:
  airbuild cache du                          what the store holds, by kind
  airbuild cache gc --max-size 20GB          evict the least recently used until it fits
  airbuild cache gc --keep-days 30 --dry-run what would go: entries unused for 30 days
  airbuild cache verify                      rehash everything; corrupt entries go to quarantine/ (exit 1)

A limit set as AIRBUILD_CACHE_MAX_SIZE, or in ~/.config/airbuild/config.toml
([cache] max_size = "20GB", keep_days = 30), is applied after every build that ends with the store to itself.
"""


def _size(text: str) -> int:
    from builder.common.errors import InputError  # only for `cache gc`: a no-op build's parse imports no more
    from builder.store.limits import parse_size  # only for `cache gc`, as above

    try:
        return parse_size(text, "--max-size")
    except InputError as exc:
        raise argparse.ArgumentTypeError(exc.message.removeprefix("--max-size: ")) from None


def _days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days")
    return value


def _cache_commands(commands) -> None:
    cache = commands.add_parser(
        "cache", help="the local store (AIRBUILD_CACHE_DIR): its size by kind, gc, verify",
        description="The store every build on this machine shares (AIRBUILD_CACHE_DIR, else ~/.cache/airbuild): "
                    "layer blobs and records, wheels, .debs, unpacked environments, validation results.",
        epilog=CACHE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = cache.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    du = sub.add_parser("du", help="the store's size by kind of entry")
    du.add_argument("--json", action="store_true", help="print one JSON object")
    gc = sub.add_parser("gc", help="evict the least recently used entries until the store fits",
                        description="Evict entries unused for --keep-days, then the least recently used ones until "
                                    "the store is under --max-size. Waits for running builds (it holds the store "
                                    "alone), so nothing a build uses is evicted. Without options: the configured "
                                    "limit (AIRBUILD_CACHE_MAX_SIZE or ~/.config/airbuild/config.toml).")
    gc.add_argument("--max-size", metavar="SIZE", type=_size,
                    help="the size to get under: 500MB, 20GB, 1.5GiB (KB/MB/GB: 1000s; KiB/MiB/GiB: 1024s)")
    gc.add_argument("--keep-days", metavar="N", type=_days, help="also evict whatever was not used for N days")
    gc.add_argument("--dry-run", action="store_true", help="say what would be evicted; remove nothing")
    gc.add_argument("--json", action="store_true", help="print one JSON object")
    verify = sub.add_parser("verify", help="rehash every blob and record; quarantine corrupt ones (exit 1 if any)",
                            description="Rehash every blob and read every record of the store; a corrupt one is "
                                        "moved to quarantine/ and listed, and the exit code is 1. Runs beside builds.")
    verify.add_argument("--json", action="store_true", help="print one JSON object")


def validation_skipped(args) -> str | None:
    """Why this command does not import the DAGs: --no-validate; for build and deploy also Astro's skip-parse."""
    if args.command in ("build", "deploy"):
        return skip_parse_reason(args.project.resolve(), args.no_validate)
    return "--no-validate" if getattr(args, "no_validate", False) else None
