"""Snapshots: a paused microVM to a state file and a memory file, and back (microvm.py); the
state file's format (format.py); KVM's vCPU and VM state (kvm_state.py); device records
(records.py); dirty pages and Diff memory files (dirty.py); rebasing a Diff onto its base
(rebase.py); the `pyrite snapshot` commands (cli.py)."""
