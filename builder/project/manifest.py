"""The project manifest (`astro.yaml`), validated with pydantic.

A plain Astro project has no manifest: every field has a default and the base
comes from the Dockerfile's `FROM`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from builder.registry.reference import TAG, parse_repository
from builder.common.errors import InputError
from builder.common.paths import MANIFEST_NAME
from builder.project.yaml_source import YamlDocument, load_yaml

RULE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class DebianUser(Strict):
    name: str
    uid: int
    gid: int = 0
    home: str | None = Field(None, description="default /home/NAME; created, owned by the user")
    shell: str = "/bin/bash"


class DebianBase(Strict):
    """A Debian base built from packages: the essential set plus `packages`, resolved and locked."""

    suite: str = Field(description="e.g. bookworm")
    packages: list[str] = Field(default_factory=list, description="packages besides the essential set")
    mirror: str | None = Field(None, description="archive root URL; default: this machine's apt sources")
    components: list[str] = Field(default_factory=lambda: ["main"])
    keyring: str | None = Field(None, description="OpenPGP keyring file (project-relative) for the Release signature")
    users: list[DebianUser] = Field(default_factory=list, description="accounts added to /etc/passwd")


class AptSourceSpec(Strict):
    uri: str = Field(description="archive root URL")
    suites: list[str]
    components: list[str] = Field(default_factory=lambda: ["main"])


class Apt(Strict):
    """Where packages.txt is resolved from, instead of the base image's own apt sources."""

    sources: list[AptSourceSpec] = Field(default_factory=list)
    keyring: str | None = Field(None, description="OpenPGP keyring file (project-relative)")


BASE_KINDS = ("image", "oci", "archive", "rootfs", "debian")
CLI_BASE_FORMS = ("image:REF, oci:DIR[:TAG|@DIGEST], archive:FILE, rootfs:FILE or debian:SUITE[:PACKAGE,...] "
                  "(a base built from Debian's packages: the essential set plus PACKAGEs)")
DEBIAN_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")


class BaseSource(Strict):
    """Where the base image comes from; exactly one field is set."""

    image: str | None = Field(None, description="registry reference, e.g. quay.io/astronomer/astro-runtime:12.1.0")
    oci: str | None = Field(None, description="OCI image layout directory, optionally DIR:TAG or DIR@sha256:...")
    archive: str | None = Field(None, description="docker-archive or OCI-layout tarball")
    rootfs: str | None = Field(None, description="plain root-filesystem tarball (e.g. written by mmdebstrap)")
    debian: DebianBase | None = Field(None, description="a Debian base built from packages")

    @model_validator(mode="after")
    def exactly_one(self) -> "BaseSource":
        given = [k for k in BASE_KINDS if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(BASE_KINDS)} (got {', '.join(given) or 'none'})")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in BASE_KINDS if getattr(self, k))

    @property
    def location(self) -> str:
        return getattr(self, self.kind)

    @classmethod
    def parse(cls, text: str) -> "BaseSource":
        """Parse the CLI form KIND:LOCATION (e.g. `rootfs:/tmp/base.tar`, `debian:bookworm:python3,curl`)."""
        kind, sep, location = text.partition(":")
        if not sep or kind not in BASE_KINDS or not location:
            raise InputError(f"--base {text!r}: expected {CLI_BASE_FORMS}")
        if kind == "debian":
            suite, _, packages = location.partition(":")
            names = [name.strip() for name in packages.split(",") if name.strip()]
            if not suite or any(not DEBIAN_PACKAGE.match(name) for name in names):
                raise InputError(f"--base {text!r}: expected debian:SUITE or debian:SUITE:PACKAGE,PACKAGE,...")
            return cls(debian=DebianBase(suite=suite, packages=names))
        return cls(**{kind: location})


class Owner(Strict):
    user: str | int = Field(description="user name (resolved through the base's /etc/passwd) or uid")
    group: str | int = Field(0, description="group name (resolved through the base's /etc/group) or gid")


class RuleSpec(Strict):
    """One layer rule, as in `rules/*.yaml` or inline in the manifest's `layers`."""

    name: str
    version: int = 1
    description: str = ""
    action: Literal["files", "system-packages", "python-requirements", "dockerfile"]
    source: str | None = Field(None, description="files: directory relative to the project")
    exclude: list[str] = Field(default_factory=list, description="files: .dockerignore-style patterns, relative to the project")
    dest: str | None = Field(None, description="files: absolute destination in the image (Jinja2: {{ workdir }})")
    file: str | None = Field(None, description="system-packages / python-requirements: the input file")
    split: int = Field(1, ge=1, le=64, description="files: up to this many layers, one per 256 files, each path's "
                                                   "chosen by a hash of its name (an edit re-tars one)")

    @field_validator("name")
    @classmethod
    def valid_name(cls, value: str) -> str:
        if not RULE_NAME.match(value):
            raise ValueError("rule names are lower-case letters, digits, '.', '_' and '-'")
        return value

    @model_validator(mode="after")
    def action_fields(self) -> "RuleSpec":
        if self.action == "files" and (self.source is None or self.dest is None):
            raise ValueError("a files rule needs both `source` and `dest`")
        if self.action in ("system-packages", "python-requirements") and self.file is None:
            raise ValueError(f"a {self.action} rule needs `file`")
        return self


class Compression(Strict):
    codec: Literal["gzip", "zstd"] = "gzip"
    level: int | None = Field(None, description="gzip (ISA-L): 0-3, default 1; zstd: 1-19, default 3")

    @model_validator(mode="after")
    def level_in_range(self) -> "Compression":
        low, high = (0, 3) if self.codec == "gzip" else (1, 19)
        if self.level is not None and not low <= self.level <= high:
            raise ValueError(f"{self.codec} level must be {low}-{high}")
        return self

    @property
    def effective_level(self) -> int:
        if self.level is not None:
            return self.level
        return 1 if self.codec == "gzip" else 3


class Validation(Strict):
    """How `build`, `parse` and `deploy` import DAG files in the sandbox."""

    timeout_s: int = Field(30, ge=1, description="wall time for one file's import")
    memory_mb: int = Field(2048, ge=64, description="address space of one file's import")
    processes: int = Field(64, ge=1, description="processes one file's import may run")
    cpu_s: int = Field(60, ge=1, description="CPU time for one file's import")
    safe_mode: bool = Field(True, description="Airflow's dag_discovery_safe_mode: skip files without 'airflow' and 'dag'")
    allowed_failures: list[str] = Field(default_factory=list, description="files (globs) allowed to fail")
    sandbox: Literal["auto", "bwrap", "docker", "none"] = Field(
        "auto", description="auto: bubblewrap, else `docker run --network none --read-only`, else an error; "
                            "none: import unconfined (only on machines you trust the DAGs on)")
    workers: int = Field(0, ge=0, le=256, description="sandboxes importing DAG files at once, each with its own "
                                                       "process limits; 0: one per CPU core")


def repository(value: str) -> str:
    """`value` if it names a registry repository (host[:port]/path, no tag); a validation error otherwise."""
    try:
        parse_repository(value)
    except InputError as exc:
        raise ValueError(exc.message) from None
    return value


ASTRO_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class AstroTarget(Strict):
    """An Astro Deployment `airbuild deploy` ships to through Astro's Deploy API."""

    deployment: str = Field(description="the Deployment's ID (Astro UI: the Deployment page's ID)")
    organization: str | None = Field(None, description="the Organization's ID; default: $ASTRO_ORGANIZATION_ID")

    @field_validator("deployment", "organization")
    @classmethod
    def valid_id(cls, value: str | None) -> str | None:
        if value is not None and not ASTRO_ID.match(value):
            raise ValueError(f"{value!r} is not an Astro ID (letters, digits, '_' and '-')")
        return value


class Target(Strict):
    """Where `airbuild deploy` ships: a registry, or an Astro Deployment."""

    registry: str | None = Field(None, description="host[:port]/repository, e.g. registry.example.com/team/airflow")
    astro: AstroTarget | None = Field(None, description="an Astro Deployment: {deployment: ID, organization: ID}")
    insecure: bool = Field(False, description="allow plain HTTP and unverified TLS (loopback registries always may)")
    tags: list[str] = Field(default_factory=list, description="tags set besides the reproducible deploy-<digest> tag")
    attest: bool = Field(True, description="attach the image's SBOMs (SPDX, CycloneDX) and SLSA provenance as OCI "
                                           "referrers when deploying to a registry (false: push the image alone)")

    @model_validator(mode="after")
    def one_destination(self) -> "Target":
        if (self.registry is None) == (self.astro is None):
            raise ValueError("a target needs exactly one of `registry` (host/repo) or `astro` ({deployment: ID})")
        if self.astro is not None and (self.insecure or self.tags):
            raise ValueError("an `astro` target takes no `insecure` or `tags`: Astro names the repository and the "
                             "tag of each deploy")
        return self

    @field_validator("registry")
    @classmethod
    def valid_registry(cls, value: str | None) -> str | None:
        return value if value is None else repository(value)

    @field_validator("tags")
    @classmethod
    def valid_tags(cls, value: list[str]) -> list[str]:
        bad = [t for t in value if not TAG.match(t)]
        if bad:
            raise ValueError(f"invalid tag {bad[0]!r}: letters, digits, '_', '.', '-', at most 128, not starting "
                             "with '.' or '-'")
        return value


BACKENDS = ("auto", "native", "buildkit")
Backend = Literal["auto", "native", "buildkit"]


class SecretSpec(Strict):
    """A build secret for `RUN --mount=type=secret,id=ID`: never part of a layer, a key or the output."""

    id: str = Field(description="the id RUN --mount=type=secret,id=... names")
    src: str | None = Field(None, description="file holding the secret (relative to the project for the manifest)")
    env: str | None = Field(None, description="or: environment variable holding it")

    @model_validator(mode="after")
    def one_source(self) -> "SecretSpec":
        if (self.src is None) == (self.env is None):
            raise ValueError("a secret needs exactly one of `src` (a file) or `env` (an environment variable)")
        if not re.match(r"^[A-Za-z0-9._-]+$", self.id):
            raise ValueError(f"secret id {self.id!r}: use letters, digits, '.', '_' and '-'")
        return self

    @classmethod
    def parse(cls, text: str) -> "SecretSpec":
        """The CLI form, as Docker's: `id=NAME,src=PATH` or `id=NAME,env=VAR` (`source=`, `type=file` too)."""
        fields: dict[str, str] = {}
        for part in text.split(","):
            key, sep, value = part.partition("=")
            key = {"source": "src", "required": "", "type": ""}.get(key.strip(), key.strip())
            if not sep or (key and key not in ("id", "src", "env")):
                raise InputError(f"--secret {text!r}: expected id=NAME,src=PATH or id=NAME,env=VARIABLE")
            if key:
                fields[key] = value
        if "id" not in fields:
            raise InputError(f"--secret {text!r}: no id=")
        if "src" not in fields and "env" not in fields:  # Docker: the id names an environment variable
            fields["env"] = fields["id"]
        try:
            return cls(**fields)
        except ValidationError as exc:
            raise InputError(f"--secret {text!r}: {exc.errors()[0]['msg'].removeprefix('Value error, ')}") from None


class Cache(Strict):
    """The team's shared build cache: a repository in an OCI registry (see builder.cache)."""

    repo: str = Field(description="host[:port]/repository that holds layer records and blobs, e.g. "
                                  "registry.example.com/team/airbuild-cache")
    mode: Literal["readwrite", "read"] = Field("readwrite", description="read: use entries, never write them")
    insecure: bool = Field(False, description="allow plain HTTP and unverified TLS (loopback registries always may)")

    @field_validator("repo")
    @classmethod
    def valid_repo(cls, value: str) -> str:
        return repository(value)


class Manifest(Strict):
    name: str | None = Field(None, description="image name; default: the project directory's name")
    platform: str = "linux/amd64"
    workdir: str = "/usr/local/airflow"
    owner: Owner | None = Field(None, description="owner of project files; default: the base image's USER, group 0")
    base: BaseSource | None = None
    dockerfile: str = "Dockerfile"
    lockfile: str = "astro.lock"
    compression: Compression = Compression()
    validation: Validation = Validation()
    index_url: str | None = Field(None, description="Python package index (PEP 503) instead of the default")
    extra_index_urls: list[str] = Field(default_factory=list, description="more Python package indexes")
    apt: Apt | None = Field(None, description="apt sources for packages.txt; default: the base image's")
    layers: list[Union[str, RuleSpec]] | None = None
    targets: dict[str, Target] = Field(default_factory=dict, description="registries and Astro Deployments "
                                                                         "`airbuild deploy` ships to")
    backend: Backend = Field("auto", description="auto: BuildKit only for Dockerfile instructions that run a "
                                                 "command (RUN); native: never; buildkit: all the Dockerfile's layers")
    build_args: dict[str, str] = Field(default_factory=dict, description="values for the Dockerfile's ARGs")
    secrets: list[SecretSpec] = Field(default_factory=list, description="build secrets for RUN --mount=type=secret")
    cache: Cache | None = Field(None, description="a shared build cache in a registry (AIRBUILD_CACHE_REPO, "
                                                  "--cache-repo override it)")

    @field_validator("targets")
    @classmethod
    def valid_target_names(cls, value: dict[str, Target]) -> dict[str, Target]:
        bad = [name for name in value if not RULE_NAME.match(name)]
        if bad:
            raise ValueError(f"target name {bad[0]!r}: use lower-case letters, digits, '.', '_' and '-'")
        return value

    @field_validator("platform")
    @classmethod
    def valid_platform(cls, value: str) -> str:
        parts = value.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError("expected OS/ARCH or OS/ARCH/VARIANT, e.g. linux/amd64")
        return value

    @field_validator("workdir")
    @classmethod
    def absolute_workdir(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("workdir must be an absolute path")
        return value.rstrip("/") or "/"


def load_manifest(project: Path) -> tuple[Manifest, Path | None]:
    """The project's manifest and its path, or the defaults when it has none."""
    path = project / MANIFEST_NAME
    if not path.exists():
        return Manifest(), None
    document = load_yaml(path)
    data = document.data if document.data is not None else {}
    if not isinstance(data, dict):
        raise InputError("expected a mapping of manifest keys at the top level", path=path, line=1)
    return validate(Manifest, document, data), path


def validate(model: type[Strict], document: YamlDocument, data: dict) -> Strict:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InputError(describe(exc, document), path=document.path, line=document.line_of(exc.errors()[0]["loc"])) from None


def describe(exc: ValidationError, document: YamlDocument) -> str:
    lines = []
    for error in exc.errors():
        loc = [p for p in error["loc"] if not _is_union_tag(p)]
        field = ".".join(str(p) for p in loc) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        line = document.line_of(tuple(loc))
        where = f"line {line}: " if line else ""
        lines.append(f"{where}{field}: {message}")
    if len(lines) == 1:
        return lines[0].split(": ", 1)[1] if lines[0].startswith("line ") else lines[0]
    return "invalid manifest:\n  " + "\n  ".join(lines)


def _is_union_tag(part: str | int) -> bool:
    # pydantic adds the union member's name ("str", "RuleSpec") to error locations.
    return isinstance(part, str) and (part in ("str", "RuleSpec") or part.startswith("function-"))
