"""The OS sandbox of the `code` node: bubblewrap on Linux, an egress proxy, and the policy.

`bwrap.py` builds the command line and probes once whether the sandbox works; `launcher.py` is the
trusted first code inside (limits, seccomp, the proxy forwarder); `run.py` runs a child with bounded
output and a wall-clock kill; `proxy.py` is the worker-side HTTP proxy that applies the egress guard;
`policy.py` decides whether the code node may be saved/run (CODE_NODE, the `nodes:code` permission).
"""
