"""What test modules share; test modules never import each other (tests/unit/test_test_layout.py
checks), fixtures are shared through conftest.py, everything else is imported from here:

- api_server: a free local port, an ASGI app served by uvicorn in a thread, a recording worker.
- api_v1: v1 API calls several API tests make (register a worker, workers by id).
- bystanders: plugin; another home's sandboxes kept up while the suite runs (KTRDR_BYSTANDERS=1).
- cli: the real `ktrdr` as a subprocess: KTRDR, the environment of a throwaway home, one call.
- compose_render: docker-compose.sandbox.yml rendered by `docker compose config` for a slot.
- docker_standin: DockerStandIn, Container, StartedStackStandIn: no engine in unit tests.
- e2e_api: start an operation and await it, as the E2E suite does inside an instance.
- engine: plugin; the Docker harness: engine probe, skip-or-fail, labelled clean-up, fixtures.
- fake_api_server: a real HTTP server answering like the v1 API, for CLI tests.
- git_repos: real git repositories in tmp_path (`git`, `make_repo`).
- host: stand-ins for the /proc files the doctor reads.
- instances: instances made as create/init make them; what a killed create leaves.
- mcp_session: the unit tests' MCP client of `ktrdr sandbox mcp` (session, drive, error_of).
- project_copy: a copy of this project as a fresh git repo; bump its version to see an edit.
- remote_engine: the second Docker engine (RemoteEngine) and scripts/remote-engine.sh.
- slots: the slot range the suite allocates from (KTRDR_TEST_SLOTS).
- ssh_stand_in: a script standing in for `ssh -N -L …` where no SSH server exists.
- waiting: `wait_for`, the one way a test polls until something holds.
- workspace: the lifecycle tests' Workspace (a project copy and a home, CLI calls on them).
"""
