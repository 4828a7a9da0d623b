"""Running the bundle without AWS: two local stacks, what both use, and the upstream emulator.

local/       the docker-free stack (`python -m devstack`, `make local`): the functions in worker
             processes, an API front door, an SQS poller, the schedules, moto in a thread, and the
             fault injection of `make chaos` (`python -m devstack.local.chaos`)
sam_local/   `sam local` wired to moto and the emulator in containers (`make sam-local`,
             `python -m devstack.sam_local`)
common/      what both stacks and the tests use: template.yaml read, its AWS resources created, each
             function's environment resolved, moto served with atomic DynamoDB requests, Lambda's
             SQS event source
emulator/    the upstream (api.kie.ai) stand-in (`python -m devstack.emulator`)
"""
