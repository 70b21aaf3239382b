"""The delivery queue: every webhook delivery is recorded here before it is answered,
then applied at once or claimed, leased and applied by a worker (one of the queue jobs
of :mod:`..jobs`); the CLI and the back office read and replay it. Import the module
itself (``deliveries.inbox``)."""
