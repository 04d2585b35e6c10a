"""The `dockerfile` action: the Dockerfile's instructions after FROM.

Public: `action` (dockerfile_action), `copy_sources` (which files a COPY takes), `run` (RUN and
engine COPY steps), `run_paths` (project files a RUN names), `segment` (EngineSegment: consecutive
RUNs in one BuildKit invocation), `secrets` (--secret for RUN).
"""
