"""The function service: Lambda's API, each invocation in its own microVM restored from the
function's snapshot. Modules, in layer order:

    protocol     the guest agent's frames (sans-I/O)
    errors       Lambda's API errors
    sigv4        AWS Signature Version 4 (sign and verify)
    credentials  the AWS shared-credentials file
    runtimes     zip -> bootable image (provided: C with the library OS)
    store        the state directory
    event_queue  asynchronous invocations on disk
    guest        snapshot a function; one clone, one invocation
    instances    warm pools, concurrency limits, clean-up
    metrics      Prometheus text format
    service      Lambda's operations
    rest         the HTTP API
    client, cli  `pyrite functions ...`
"""
