"""Devices a guest finds through the ACPI tables only (no registers): the VM generation ID."""
