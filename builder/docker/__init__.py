"""The Docker CLI and daemon: which `docker` reaches one, and driving BuildKit through it.

Public: `engine` (candidates, daemon_version, detect, Engine, NoEngine), `client` (EngineSession,
EngineClient). Loaded only where an engine is needed (a Dockerfile RUN, the docker sandbox).
"""
