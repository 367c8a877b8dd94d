"""Snapshots: a paused microVM to a state file and a memory file, and back (microvm.py); the
state file's format (format.py); KVM's vCPU and VM state (kvm_state.py); device records
(records.py)."""
