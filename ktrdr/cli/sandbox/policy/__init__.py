"""The stack policy: what an instance's resolved compose model may ask of the engine, checked
before any of its containers is created or started.

The worktree is untrusted input (an agent edits its compose file), so the model compose would run
is checked against an allowlist and explicit rules: host paths, the Docker socket, privileges,
host namespaces, published addresses, resources the instance does not own, owner labels.

- rules.py: the rule names, what each refuses and why, and the allowlists
- checker.py: the pure check (a resolved model + the instance's facts -> violations)
- model.py: the resolved model (`docker compose … config --format json`)
- enforcement.py: `check_stack(instance, allow=…)`, the one call every start path makes

May import: base, slots, home, engine, instances, stack, remote. Never
click, never printing: refusals are one SandboxError line.
"""
