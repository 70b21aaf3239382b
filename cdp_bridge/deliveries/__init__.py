"""The delivery queue: every webhook delivery is recorded here before it is answered,
then applied at once or claimed, leased and applied by a worker; the CLI and the back
office read and replay it. Import the modules themselves (``deliveries.inbox``,
``deliveries.worker``): this package imports nothing, so the store layers below can use
the inbox without loading the worker."""
