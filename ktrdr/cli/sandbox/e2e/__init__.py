"""Testing an instance from inside its network (`test-e2e`, its allowed pytest arguments) and the
evidence bundle of what it ran.

May import: base … stack, remote, policy.
"""
