"""The actions rules name: each turns one kind of input into layer steps (content) and config steps.

An action reads the project and the base, and says what its layers hold and what keys them; it
never writes the store itself (the engine does). Public: `steps` (BuildContext, BuildState,
LayerStep, ConfigStep, ActionResult: the contract with the engine), `files` (files_action),
`dockerfile` (dockerfile_action: COPY natively, RUN through BuildKit), `python` (python_action:
requirements.txt), `debian` (system_packages_action: packages.txt).
"""
