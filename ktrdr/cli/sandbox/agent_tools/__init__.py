"""Agent tools make the worktrees: what `ktrdr sandbox hook …` and `ktrdr sandbox hooks …` do
for Claude Code (its WorktreeCreate/WorktreeRemove hooks) and for tools that run a setup and a
teardown script in each worktree (Codex, Conductor, Cursor, a script of your own).

- payload.py: the hook's JSON on stdin, read without waiting for an EOF that may never come,
  and the field variants that have shipped (`name`/`worktree_name`, `base_commit`/…)
- naming.py: a hook's worktree name made into a valid instance name
- worktree_hook.py: WorktreeCreate/WorktreeRemove: create/destroy the instance, pin, start
- plain_worktree.py: the same hooks in a repository without a sandbox stack (a plain worktree)
- pin.py: the instance's `.mcp.json`, starting `ktrdr sandbox mcp` pinned to it
- background.py: the detached `ktrdr sandbox up` a hook starts, its log and state for `status`
- scripts.py: `hook setup` / `hook teardown`: the current directory made an instance / removed
- settings_file.py: Claude Code's settings.json: our hook entries merged in or taken out
- git_files.py: the few git calls on one file of a worktree that pin.py needs

May import: the flat base (errors, atomic, home, proc, registry, worktree, owned_process,
instance, ports, stack_file), create, init_checkout, destroy, locate, mcp_config: in the feature
layers it sits above mcp and below commands (status reads the background start's record itself,
never this package). Never click, never printing: results are dataclasses, refusals one
SandboxError line.
"""
