#!/bin/sh
# fedmesh-vm-agent: runs the agent bundled in /usr/lib/fedmesh-vm-agent with the system's Node.js (>= 20).
exec /usr/bin/node /usr/lib/fedmesh-vm-agent/dist/main.js "$@"
