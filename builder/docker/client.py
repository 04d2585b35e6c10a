"""The Docker operations a BuildKit step needs, through python-on-whales, each one counted."""

from __future__ import annotations

from pathlib import Path

from python_on_whales import DockerClient
from python_on_whales.exceptions import DockerException
from python_on_whales.utils import run

from builder.docker.engine import Engine, EngineSession
from builder.common.errors import BuildError


class EngineClient:
    def __init__(self, engine: Engine, session: EngineSession):
        self.engine = engine
        self.session = session
        self.docker = DockerClient(client_call=[engine.client])

    def _count(self) -> None:
        self.session.calls[0] += 1

    def image_exists(self, reference: str) -> bool:
        self._count()
        return self.docker.image.exists(reference)

    def load(self, archive: Path) -> None:
        self._count()
        try:
            self.docker.image.load(archive, quiet=True)
        except DockerException as exc:
            raise BuildError(f"docker load of the layers below the RUN failed: {_tail(exc)}") from None

    def tag(self, image: str, reference: str) -> None:
        self._count()
        self.docker.image.tag(image, reference)

    def image_of(self, reference: str) -> str | None:
        """The image id a tag points at, or None."""
        self._count()
        try:
            return self.docker.image.inspect(reference).id
        except DockerException:
            return None

    def remove(self, image: str) -> None:
        """Remove an image if nothing else needs it (other tags, child images); errors are ignored."""
        self._count()
        try:
            self.docker.image.remove(image, prune=True)
        except DockerException:
            pass

    def build(self, context: Path, dockerfile: Path, build_args: dict[str, str], secrets: list[str],
              iidfile: Path) -> str:
        """Run BuildKit on `dockerfile`; the new image's id. Raises BuildError with BuildKit's output."""
        self._count()
        self.session.builds += 1
        try:
            if self.engine.mode == "buildx":
                image = self.docker.buildx.build(context, file=dockerfile, build_args=build_args, secrets=secrets,
                                                 network="host", load=True, progress="plain")
                return image.id
            command = self.docker.client_config.docker_cmd + [
                "build", "--network", "host", "--progress", "plain", "--file", str(dockerfile),
                "--iidfile", str(iidfile)]
            for name, value in build_args.items():
                command += ["--build-arg", f"{name}={value}"]
            for secret in secrets:
                command += ["--secret", secret]
            run(command + [str(context)], env={"DOCKER_BUILDKIT": "1"})
            return iidfile.read_text().strip()
        except DockerException as exc:
            raise EngineBuildFailed("\n".join(filter(None, (exc.stdout, exc.stderr)))) from None

    def save(self, image: str, output: Path) -> None:
        self._count()
        try:  # not docker.image.save(): it inspects the image first, one more call
            run(self.docker.client_config.docker_cmd + ["image", "save", "--output", str(output), image])
        except DockerException as exc:
            raise BuildError(f"docker save of the image BuildKit built failed: {_tail(exc)}") from None


class EngineBuildFailed(Exception):
    def __init__(self, output: str):
        self.output = output
        super().__init__(output[-2000:])


def _tail(exc, lines: int = 5) -> str:
    text = (getattr(exc, "stderr", None) or getattr(exc, "stdout", None) or str(exc)).strip()
    return "\n".join(text.splitlines()[-lines:])
