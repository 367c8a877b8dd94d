"""pyrite's jailer: Firecracker's jailer command line and steps (docs/jailer.md), for pyrite's
VMM and for the real Firecracker binary.

    args.py      the command line, with Firecracker's texts (parse errors, --help, --version)
    config.py    validation into a JailConfig (Firecracker's Env::new), no side effect
    errors.py    JailerError (Firecracker's texts)
    cgroups.py   cgroup v1 / v2 set-up from /proc/mounts, undone on failure
    rlimits.py   --resource-limit
    chroot.py    new mount namespace + pivot_root into the jail
    devices.py   the jail's folders and device nodes
    process.py   netns, daemonize, new pid namespace, pid file, uid/gid drop
    target.py    what runs in the jail: pyrite's VMM in this process, or an exec'd binary
                 (pyrite.api.preload loads what the VMM needs before the jail hides the host)
    cli.py       `pyrite-jailer`: the steps in Firecracker's order
"""
